package e2e

import (
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestGuestPoweredOffInsideIsNoticed: a guest that shuts itself down, a
// container whose init is told to power off and a VM whose kernel powers
// the machine off, is seen as stopped with its exit recorded, and starts
// again.
func TestGuestPoweredOffInsideIsNoticed(t *testing.T) {
	requireRoot(t)
	t.Run("container", func(t *testing.T) {
		g := launch(t, env.main, "busybox", "e2e-poweroff")
		poweroffInside(t, env.main, g)
	})
	t.Run("vm", func(t *testing.T) {
		requireVMTemplates(t)
		d := ownDaemonWithVM(t)
		g := launch(t, d, "busybox", "poweroff", "--type", "vm")
		poweroffInside(t, d, g)
	})
}

func poweroffInside(t *testing.T, d *testenv.Daemon, g api.Guest) {
	t.Helper()
	// The exec's own end may race the guest's: only the state counts.
	d.Run("exec", g.Name, "--", "poweroff")
	deadline := time.Now().Add(60 * time.Second)
	for {
		after := info(t, d, g.Name)
		if after.State == api.StateStopped && after.LastExit != nil {
			t.Logf("last exit after poweroff inside: %+v", *after.LastExit)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest still reported as %+v a minute after poweroff inside", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if alive(g.PID) {
		t.Errorf("the guest's process %d still runs after it was reported stopped", g.PID)
	}
	d.Must(t, "start", g.Name)
	if out := d.Must(t, "exec", g.Name, "--", "echo", "back"); out != "back\n" {
		t.Errorf("exec after a restart that followed poweroff: %q", out)
	}
}
