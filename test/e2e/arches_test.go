package e2e

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// foreignArches are the emulated architectures beyond aarch64: each a busybox VM template
// built from Debian's kernel and busybox-static for it, booted on its QEMU machine.
var foreignArches = []struct {
	arch, uname, machine, console string
}{
	{"riscv64", "riscv64", "virt", "ttyS0"},
	{"ppc64el", "ppc64le", "pseries", "hvc0"},
	{"s390x", "s390x", "s390-ccw-virtio", "ttysclp0"},
	{"armhf", "armv7l", "virt", "ttyAMA0"},
}

// TestForeignArchGuests builds a busybox VM template for each foreign architecture, launches
// one guest of each at once (all under TCG), and checks that the agent inside answers exec
// with the guest's own uname -m, that the console shows its kernel, and that stop powers it
// off cleanly through the agent.
func TestForeignArchGuests(t *testing.T) {
	requireRoot(t)
	// Four TCG guests' boots: it runs beside the other slow emulators.
	t.Parallel()
	d := env.main
	var wg sync.WaitGroup
	began := time.Now()
	for _, a := range foreignArches {
		name := "busybox.vm." + a.arch
		t.Cleanup(func() { d.Run("template", "delete", name) })
		wg.Go(func() {
			start := time.Now()
			if out, errOut, code := d.Run("template", "build", "busybox", "--type", "vm", "--arch", a.arch); code != 0 {
				t.Errorf("template build for %s: %s%s", a.arch, out, errOut)
				return
			}
			t.Logf("%s: template built in %s", a.arch, time.Since(start).Round(100*time.Millisecond))
		})
	}
	wg.Wait()
	t.Logf("templates built in %s", time.Since(began).Round(100*time.Millisecond))
	if t.Failed() {
		return
	}
	for _, a := range foreignArches {
		var tmpl api.Template
		jsonUnmarshal(d.Must(t, "template", "show", "busybox.vm."+a.arch, "--format", "json"), &tmpl)
		if b := tmpl.Boot; b == nil || b.Machine != a.machine || b.Console != a.console {
			t.Errorf("%s template boots %+v, want machine %s console %s", a.arch, b, a.machine, a.console)
		} else {
			t.Logf("%s: %s -M %s, console %s, kernel %s %s", a.arch, b.QEMU, b.Machine, b.Console, b.Kernel, b.KernelVersion)
		}
	}

	began = time.Now()
	for _, a := range foreignArches {
		name := "e2e-" + a.arch
		t.Cleanup(func() { d.Run("delete", "--force", name) })
		wg.Go(func() {
			start := time.Now()
			if out, errOut, code := d.Run("launch", "busybox", name, "--type", "vm", "--arch", a.arch); code != 0 {
				t.Errorf("launch %s: %s%s", a.arch, out, errOut)
				return
			}
			booted := time.Since(start)
			var g api.Guest
			out, errOut, code := d.Run("info", name, "--format", "json")
			if code != 0 || json.Unmarshal([]byte(out), &g) != nil {
				t.Errorf("info %s: %s%s", name, out, errOut)
				return
			}
			if g.State != api.StateRunning || g.Class != "emulation" || g.Accel != "tcg" || g.Arch != a.arch {
				t.Errorf("%s: state %s class %s accel %s arch %s", name, g.State, g.Class, g.Accel, g.Arch)
			}
			out, errOut, code = d.Run("exec", name, "--", "uname", "-m")
			if m := strings.TrimSpace(out); code != 0 || m != a.uname {
				t.Errorf("uname -m in the %s guest: %q (exit %d, %s)", a.arch, m, code, errOut)
			}
			if log, _, _ := d.Run("console", name, "--log"); !strings.Contains(log, "Linux version") {
				t.Errorf("the %s console log does not show the kernel booting:\n%s", a.arch, log)
			}
			// A clean stop: the agent runs poweroff, and QEMU exits by itself well before the
			// timeout after which it would be killed.
			const timeout = 90 * time.Second
			start = time.Now()
			if out, errOut, code := d.Run("stop", name, "--timeout", timeout.String()); code != 0 {
				t.Errorf("stop %s: %s%s", name, out, errOut)
				return
			}
			stopped := time.Since(start)
			if stopped >= timeout {
				t.Errorf("%s: stop took %s: the guest did not power off, QEMU was killed", a.arch, stopped)
			}
			t.Logf("%s: launch to agent %s, stop %s", a.arch, booted.Round(100*time.Millisecond), stopped.Round(100*time.Millisecond))
			if out, errOut, code := d.Run("delete", name); code != 0 {
				t.Errorf("delete %s: %s%s", name, out, errOut)
			}
		})
	}
	wg.Wait()
	t.Logf("four guests launched, checked, stopped and deleted in %s", time.Since(began).Round(100*time.Millisecond))
}
