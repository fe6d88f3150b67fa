package qemu

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/network"
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

// A VM with 10 NICs gets 10 virtio NICs, in order, each with its MAC and
// its own tap (an imported guest keeps every NIC its vendor gave it).
func TestCommandLineHasEveryNIC(t *testing.T) {
	s := testSpec(nil)
	s.Def.Type, s.Def.Networks = guest.TypeVM, []string{"polyvisor0"}
	var want []string
	for i := range 10 {
		mac := fmt.Sprintf("00:50:56:00:00:%02x", i)
		s.Def.NICs = append(s.Def.NICs, guest.NIC{Network: "polyvisor0", MAC: mac})
		want = append(want, mac)
	}
	s.NICs = network.GuestNICs(s.Def)
	argv := commandLine(s)
	var macs []string
	taps := map[string]bool{}
	for i, arg := range argv {
		if i == 0 {
			continue
		}
		switch argv[i-1] {
		case "-device":
			if _, after, ok := strings.Cut(arg, ",mac="); ok && strings.HasPrefix(arg, "virtio-net-") {
				macs = append(macs, after)
			}
		case "-netdev":
			for _, opt := range strings.Split(arg, ",") {
				if tap, ok := strings.CutPrefix(opt, "ifname="); ok {
					taps[tap] = true
				}
			}
		}
	}
	if !slices.Equal(macs, want) || len(taps) != 10 {
		t.Errorf("NIC MACs %v with %d taps, want %v with 10: %q", macs, len(taps), want, argv)
	}
}

// A VM's data disks come after its root disk, in order, each a virtio
// disk on the machine's bus with its own drive, none with a bootindex: the
// guest sees them as vdb, vdc... and the firmware boots the root disk.
func TestCommandLineAttachesDataDisksAfterTheRoot(t *testing.T) {
	s := testSpec(nil)
	s.Boot = api.TemplateBoot{QEMU: "qemu-system-x86_64", Machine: "q35", Firmware: "bios", Console: "ttyS0"}
	s.Data = []dataDrive{{Name: "data1", Path: "/g/vm1/disks/data1.qcow2"}, {Name: "data2", Path: "/g/vm1/disks/data2.qcow2"}}
	argv := commandLine(s)
	var drives, devices []string
	for i, arg := range argv[1:] {
		switch argv[i] {
		case "-drive":
			drives = append(drives, arg)
		case "-device":
			if strings.HasPrefix(arg, "virtio-blk-") {
				devices = append(devices, arg)
			}
		}
	}
	wantDrives := []string{
		"id=root,file=/g/vm1/disks/root.qcow2,format=qcow2,if=none,discard=unmap,auto-read-only=off",
		"id=data1,file=/g/vm1/disks/data1.qcow2,format=qcow2,if=none,discard=unmap,auto-read-only=off",
		"id=data2,file=/g/vm1/disks/data2.qcow2,format=qcow2,if=none,discard=unmap,auto-read-only=off",
	}
	wantDevices := []string{"virtio-blk-pci,drive=root,bootindex=1", "virtio-blk-pci,drive=data1", "virtio-blk-pci,drive=data2"}
	if !slices.Equal(drives, wantDrives) || !slices.Equal(devices, wantDevices) {
		t.Errorf("drives %q and disks %q, want %q and %q", drives, devices, wantDrives, wantDevices)
	}
}
