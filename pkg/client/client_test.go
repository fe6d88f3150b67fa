package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// serve answers every request on a unix socket with handler.
func serve(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pv.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestAPIErrorsKeepTheirSentinel(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(api.Error{Error: "guest web: not found", Kind: "not-found"})
	})
	_, err := New(sock).Guest(context.Background(), "web")
	if !errors.Is(err, api.ErrNotFound) || err.Error() != "guest web: not found" {
		t.Errorf("err = %v", err)
	}
}

func TestFailedOperationKeepsItsSentinel(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.Operation{ID: "1", Status: api.OpFailure, Error: "template x: not found", ErrorKind: "not-found"})
	})
	err := New(sock).Wait(context.Background(), api.Operation{ID: "1", Status: api.OpRunning}, nil)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("err = %v", err)
	}
}

func TestUnreachableDaemonSaysWhatToDo(t *testing.T) {
	_, err := New(filepath.Join(t.TempDir(), "none.sock")).Guests(context.Background())
	if err == nil || !strings.Contains(err.Error(), "start it with 'polyvisor daemon'") || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v", err)
	}
}
