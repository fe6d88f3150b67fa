package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
)

// TestAFrozenContainerIsThawedWhenAdopted: a daemon that dies while a
// snapshot or copy holds a container frozen (between runc pause and runc
// resume) used to leave it frozen for good: shown running, but exec, stop
// and delete --force failed. The next daemon thaws it when it adopts it.
func TestAFrozenContainerIsThawedWhenAdopted(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "frozen")
	// The state such a crash leaves: the container paused, no daemon.
	runc := hostreq.Need(t, "runc")
	if out, err := exec.Command(runc, "--root", layout.New(d.StateDir).RuncRoot(), "pause", "frozen").CombinedOutput(); err != nil {
		t.Fatalf("runc pause: %v: %s", err, out)
	}
	d.Kill()
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := d.Run("exec", "frozen", "--", "echo", "thawed"); code != 0 || out != "thawed\n" {
		t.Fatalf("exec after the restart: code %d, %q %q", code, out, errOut)
	}
	if !strings.Contains(d.Log(), "thawed a container") {
		t.Errorf("the daemon's log does not say it thawed the guest:\n%s", d.Log())
	}
	d.Must(t, "stop", "frozen")
	d.Must(t, "delete", "frozen")
}

// TestExecIntoAVMWhoseAgentIsFrozenFailsInTime: exec into a VM whose agent
// stopped answering used to wait forever; it now fails within the agent
// deadline with one line that says where to look, and the daemon stays up.
func TestExecIntoAVMWhoseAgentIsFrozenFailsInTime(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	vm := launch(t, d, "busybox", "e2e-silent", "--type", "vm")
	// The agent freezes itself a moment after answering this exec.
	d.Must(t, "exec", vm.Name, "--", "sh", "-c", "(sleep 1; kill -STOP $(pidof polyvisor-agent)) </dev/null >/dev/null 2>&1 &")
	time.Sleep(3 * time.Second)
	began := time.Now()
	out, errOut, code := d.Run("exec", vm.Name, "--", "echo", "hello")
	took := time.Since(began)
	if code == 0 || out != "" {
		t.Fatalf("exec into a frozen agent: code %d, out %q, err %q", code, out, errOut)
	}
	want := "Error: exec in e2e-silent: the guest agent did not answer within 15s: is the guest booted? see 'polyvisor console e2e-silent --log'\n"
	if errOut != want {
		t.Errorf("exec's error:\n got %q\nwant %q", errOut, want)
	}
	if took > 40*time.Second {
		t.Errorf("exec took %s to give up", took)
	}
	if g := info(t, d, vm.Name); g.State != api.StateRunning {
		t.Errorf("the guest after the failed exec: %+v", g)
	}
	// The daemon still answers, and the guest can still be stopped.
	d.Must(t, "stop", vm.Name, "--force")
}
