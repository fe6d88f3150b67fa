package monitored

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// A supervisor that is exiting, idle, answers a start with "retry": the
// start asks again, a little later, until one takes it, rather than
// failing a launch that merely came at the wrong moment.
func TestStartAsksAgainWhileTheSupervisorExits(t *testing.T) {
	dir := t.TempDir()
	// The lock names the supervisor; the test process stands in for it
	// and for the guest's init.
	self := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(filepath.Join(dir, monitor.SupervisorLockName), []byte(self+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, monitor.SupervisorSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const retries = 5
	served := make(chan []string, retries+1)
	go func() {
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			var req monitor.Request
			line, _ := bufio.NewReader(conn).ReadBytes('\n')
			json.Unmarshal(line, &req)
			served <- append([]string{req.Op}, req.Args...)
			answer := monitor.AnswerRetry
			if i == retries {
				answer = "ok " + self
			}
			conn.Write([]byte(answer + "\n"))
			conn.Close()
		}
	}()
	s := &Supervisor{Monitor: "/nonexistent/polyvisor-monitor", Dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := monitor.Config{ID: "g1", Bundle: "/b", Runc: "runc", RuncRoot: "/r", Dir: "/d", Log: "/l", LogMax: 1}
	status, err := s.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start after %d retries: %v", retries, err)
	}
	if len(served) != retries+1 {
		t.Errorf("the supervisor was asked %d times, want %d", len(served), retries+1)
	}
	if req := <-served; req[0] != "start" || len(req) < 3 || req[2] != "g1" {
		t.Errorf("request %q, want a start of g1", req)
	}
	if status.InitPID != os.Getpid() || status.MonitorPID != os.Getpid() {
		t.Errorf("status %+v, want the init and the supervisor it answered with", status)
	}
}
