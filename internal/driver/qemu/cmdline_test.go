package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func testSpec(c *confinement) vmSpec {
	return vmSpec{
		Def:  &guest.Definition{Name: "vm1", CPUs: 2, Memory: 256 << 20},
		Boot: api.TemplateBoot{QEMU: "qemu-system-x86_64", Machine: "microvm", Kernel: "vmlinux", Initrd: "initrd", Console: "ttyS0"},
		Disk: "/g/vm1/disks/root.qcow2", Accel: "tcg", QMP: "/run/p/vm1/qmp.sock", Agent: "/run/p/vm1/agent.sock",
		Confine: c,
	}
}

// option returns the value after the first occurrence of flag in argv.
func option(argv []string, flag string) (string, bool) {
	i := slices.Index(argv, flag)
	if i < 0 || i+1 >= len(argv) {
		return "", false
	}
	return argv[i+1], true
}

func TestCommandLineConfinesQEMU(t *testing.T) {
	c := &confinement{User: User, Sandbox: sandboxPolicy, Cgroup: "/polyvisor/vm1"}
	argv := commandLine(testSpec(c))
	if v, _ := option(argv, "-sandbox"); v != "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny" {
		t.Errorf("-sandbox %q", v)
	}
	if v, _ := option(argv, "-runas"); v != User {
		t.Errorf("-runas %q, want %s (QEMU 7.2 has no -run-with)", v, User)
	}
	if slices.Contains(argv, "-run-with") {
		t.Errorf("both spellings of the user: %q", argv)
	}

	c.RunWith = true
	argv = commandLine(testSpec(c))
	if v, _ := option(argv, "-run-with"); v != "user="+User || slices.Contains(argv, "-runas") {
		t.Errorf("QEMU 9.1 and later: -run-with %q in %q", v, argv)
	}
	// The options come before the devices: a QEMU that cannot confine
	// itself fails before it opens anything.
	if slices.Index(argv, "-sandbox") > slices.Index(argv, "-drive") {
		t.Errorf("-sandbox after the devices: %q", argv)
	}

	argv = commandLine(testSpec(nil))
	for _, flag := range []string{"-sandbox", "-runas", "-run-with"} {
		if slices.Contains(argv, flag) {
			t.Errorf("an unconfined command line has %s: %q", flag, strings.Join(argv, " "))
		}
	}
}

func TestRunWithSince(t *testing.T) {
	for version, want := range map[string]bool{
		"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright": false,
		"QEMU emulator version 9.0.2":                     false,
		"QEMU emulator version 9.1.0":                     true,
		"QEMU emulator version 10.0.0 (Debian 1:10.0+ds)": true,
	} {
		got, err := runWithSince(version)
		if err != nil || got != want {
			t.Errorf("%q: got %v, %v; want %v", version, got, err, want)
		}
	}
	if _, err := runWithSince("no version here"); err == nil {
		t.Error("a version line without a version was accepted")
	}
}

func TestConfinementLimits(t *testing.T) {
	d := New(Options{})
	d.runWith["qemu-system-x86_64"] = false // spares running it
	d.opts.Unconfined = true
	def := &guest.Definition{Name: "vm1", CPUs: 2, Memory: 512 << 20}
	if c, err := d.confine(t.Context(), def, "qemu-system-x86_64", "tcg"); c != nil || err != nil {
		t.Fatalf("an unconfined driver confines: %+v, %v", c, err)
	}
	for accel, want := range map[string]cgroup.Limits{
		"tcg": {Memory: 512<<20 + 256<<20 + 1<<30, CPUs: 2},
		"kvm": {Memory: 512<<20 + 256<<20, CPUs: 2},
	} {
		if got := limitsOf(def, accel); got != want {
			t.Errorf("%s: limits %+v, want %+v", accel, got, want)
		}
	}
}
