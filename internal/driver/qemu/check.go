package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Check implements driver.Driver: which QEMU system emulators exist, and
// whether KVM really runs a guest (the canary), else why not.
func (d *Driver) Check(ctx context.Context) (v api.ClassVerdict) {
	began := time.Now()
	v = api.ClassVerdict{Class: Class, Details: map[string]string{}}
	defer func() { v.Duration = time.Since(began).Round(time.Millisecond).String() }()
	var emulators []string
	var hostMissing error
	for _, a := range arch.All() {
		path, err := hostreq.Lookup(a.Emulator)
		if a == arch.Host() {
			hostMissing = err
		}
		if err == nil {
			emulators = append(emulators, a.QEMU)
			if a == arch.Host() {
				if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
					v.Details["qemuVersion"] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
				}
			}
		}
	}
	if len(emulators) == 0 {
		v.Reason = hostMissing.Error()
		return v
	}
	v.Details["emulators"] = strings.Join(emulators, ",")
	kvm, why := d.accel.recheck(ctx, d)
	v.Details["accel"] = "tcg"
	v.Details["kvm"] = why
	if kvm {
		v.Details["accel"] = "kvm"
	}
	v.Works = true
	if kvm {
		v.Reason = fmt.Sprintf("KVM (%s); emulation of %s under TCG", why, strings.Join(emulators, ", "))
	} else {
		v.Reason = fmt.Sprintf("TCG only: %s; emulation of %s", why, strings.Join(emulators, ", "))
	}
	return v
}
