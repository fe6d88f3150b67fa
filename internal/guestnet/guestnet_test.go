package guestnet_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/guestnet"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// The launcher, told that the guest has no network, sleeps at once rather
// than watching for an eth0. It runs in a network namespace of its own,
// with busybox's sh as in the guests: whatever it would try reaches no
// interface of the host.
func TestLauncherSleepsAtOnceWithNoNetwork(t *testing.T) {
	testgate.RequireRoot(t, "a network namespace of its own needs root")
	busybox := hostreq.Need(t, "busybox")
	unshare := hostreq.Need(t, "unshare")
	dir := t.TempDir()
	// The launcher runs busybox applets by name: a PATH of busybox links.
	for _, applet := range []string{"sh", "sleep", "cat"} {
		if err := os.Symlink(busybox, dir+"/"+applet); err != nil {
			t.Fatal(err)
		}
	}
	script := dir + "/dhcp"
	if err := os.WriteFile(script, []byte(guestnet.Launcher), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--net", dir+"/sh", script)
	cmd.Env = []string{"PATH=" + dir, guestnet.NoNetworkEnv}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(ended)
	}()
	defer func() {
		cmd.Process.Kill()
		<-ended
	}()
	// unshare execs the shell, which execs sleep: the same pid throughout.
	// Its command line reads empty for a moment during each exec.
	cmdline := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-ended:
			t.Fatalf("the launcher of a guest with no network ended instead of sleeping (%v; last ran %q)", waitErr, last)
		default:
		}
		if data, err := os.ReadFile(cmdline); err == nil && len(data) > 0 {
			if last = strings.ReplaceAll(string(data), "\x00", " "); strings.HasPrefix(last, "sleep 2147483647") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the launcher of a guest with no network runs %q 5 s on, not sleep", last)
}
