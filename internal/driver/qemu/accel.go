package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// canaryTimeout bounds the KVM canary boot: a kernel and initrd that only
// print a marker take well under a second under KVM.
const canaryTimeout = 20 * time.Second

// canaryMarker is what the template's initrd prints when booted with
// polyvisor.canary on its command line.
const canaryMarker = "POLYVISOR-CANARY-OK"

// accelerator decides between KVM and TCG, trusting only a canary guest
// that really boots under KVM: opening /dev/kvm proves nothing (nested KVM
// here hangs Linux guests or fails with an emulation error). The verdict is
// cached until the next host check.
type accelerator struct {
	mu      sync.Mutex
	checked bool
	kvm     bool
	reason  string
}

// decide returns the accelerator for a guest of guestArch, and why.
func (a *accelerator) decide(ctx context.Context, d *Driver, guestArch string) (string, string) {
	if guestArch != "" && guestArch != arch.Host().Debian {
		return "tcg", "foreign architecture: emulated"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.checked {
		a.kvm, a.reason = canary(ctx, d)
		a.checked = true
	}
	if a.kvm {
		return "kvm", a.reason
	}
	return "tcg", a.reason
}

// recheck runs the canary again (host check asks for a fresh verdict).
func (a *accelerator) recheck(ctx context.Context, d *Driver) (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kvm, a.reason = canary(ctx, d)
	a.checked = true
	return a.kvm, a.reason
}

// canary boots a host-arch VM template's kernel and initrd under KVM with
// a deadline and reports whether it reached its init.
func canary(ctx context.Context, d *Driver) (bool, string) {
	note := ""
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		note = " (the host's KVM is kvm_pvm, which runs only guest kernels built for PVM)"
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, "no /dev/kvm on this host" + note
	}
	t, err := hostTemplate(d.templates)
	if err != nil {
		return false, "KVM not tried yet: " + err.Error() + note
	}
	ctx, cancel := context.WithTimeout(ctx, canaryTimeout)
	defer cancel()
	dir := filepath.Join(d.templates.Dir, t.ID)
	out, runErr := exec.CommandContext(ctx, t.Boot.QEMU,
		"-machine", t.Boot.Machine+",accel=kvm", "-cpu", "host", "-m", "128",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(dir, t.Boot.Kernel), "-initrd", filepath.Join(dir, t.Boot.Initrd),
		"-append", "console="+t.Boot.Console+" polyvisor.canary", "-serial", "stdio",
	).CombinedOutput()
	if strings.Contains(string(out), canaryMarker) {
		return true, "a canary guest booted under KVM"
	}
	why := lastOutput(string(out))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = fmt.Sprintf("it did not reach its init within %s (%s)", canaryTimeout, why)
	} else if runErr != nil {
		why = fmt.Sprintf("%v: %s", runErr, why)
	}
	return false, "KVM canary failed: " + why + note
}

// hostTemplate finds a VM template of the host's arch to boot the canary.
func hostTemplate(store template.Store) (*api.Template, error) {
	list, err := store.List()
	if err != nil {
		return nil, err
	}
	for i := range list {
		if t := &list[i]; t.Type == template.TypeVM && t.Arch == arch.Host().Debian && t.Boot != nil && t.Boot.Kernel != "" {
			return t, nil
		}
	}
	return nil, fmt.Errorf("no %s VM template to boot a canary (build one: polyvisor template build busybox --type vm)", arch.Host().Debian)
}

// lastOutput keeps the last lines of QEMU's output, on one line.
func lastOutput(out string) string {
	if lines := runcmd.LastLines(out, 2); lines != "" {
		return lines
	}
	return "no output"
}
