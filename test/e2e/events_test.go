package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// `polyvisor monitor` prints a container's life as it happens, as a user
// watching beside another terminal sees it, with real runc underneath.
func TestMonitorPrintsAGuestsLife(t *testing.T) {
	requireRoot(t)
	d := env.main
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.BinDir, "polyvisor"), "--socket", d.Socket, "monitor", "--type", "lifecycle")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	// The monitor is subscribed once the daemon counts it.
	for {
		info, err := d.Client().Server(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.EventSubscribers > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("polyvisor monitor never subscribed")
		case <-time.After(20 * time.Millisecond):
		}
	}
	const name = "e2e-events"
	lines := make(chan []string)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(out)
		for s.Scan() {
			// "TIME lifecycle ACTION GUEST"; other tests' guests share the daemon.
			if f := strings.Fields(s.Text()); len(f) == 4 && f[3] == name {
				lines <- f
			}
		}
	}()
	launch(t, d, "busybox", name)
	d.Must(t, "stop", name)
	d.Must(t, "delete", name)

	want := []string{api.GuestCreated, api.GuestStarted, api.GuestStopped, api.GuestDeleted}
	var got []string
	for len(got) < len(want) {
		select {
		case f, ok := <-lines:
			if !ok {
				t.Fatalf("polyvisor monitor ended after %v", got)
			}
			if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil || f[1] != api.EventLifecycle {
				t.Fatalf("monitor line %q", strings.Join(f, " "))
			}
			got = append(got, f[2])
		case <-ctx.Done():
			t.Fatalf("monitor printed %v of %s's life, want %v", got, name, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("monitor printed %v, want %v", got, want)
	}
}
