package qemu

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// foreignBoots are the boots of the emulated architectures' templates, as vmimage makes them.
var foreignBoots = []struct {
	boot          api.TemplateBoot
	machine, cpu  string
	bus, firmware string
}{
	{api.TemplateBoot{QEMU: "qemu-system-aarch64", Machine: "virt", Console: "ttyAMA0"}, "virt,accel=tcg", "cortex-a57", "device", ""},
	{api.TemplateBoot{QEMU: "qemu-system-riscv64", Machine: "virt", Console: "ttyS0"}, "virt,accel=tcg", "rv64", "device", "default"},
	{api.TemplateBoot{QEMU: "qemu-system-ppc64", Machine: "pseries", Console: "hvc0"},
		"pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off,accel=tcg", "power9", "pci", ""},
	{api.TemplateBoot{QEMU: "qemu-system-s390x", Machine: "s390-ccw-virtio", Console: "ttysclp0"}, "s390-ccw-virtio,accel=tcg", "max", "ccw", ""},
	{api.TemplateBoot{QEMU: "qemu-system-arm", Machine: "virt", Console: "ttyAMA0"}, "virt,accel=tcg", "cortex-a15", "device", ""},
}

func TestCommandLinePerMachine(t *testing.T) {
	for _, tc := range foreignBoots {
		t.Run(tc.boot.QEMU, func(t *testing.T) {
			s := testSpec(nil)
			s.Boot = tc.boot
			s.Boot.Kernel, s.Boot.Initrd, s.Boot.Cmdline = "kernel", "initrd.img", "root=/dev/vda ro"
			argv := commandLine(s)
			if argv[0] != tc.boot.QEMU {
				t.Errorf("runs %s", argv[0])
			}
			if v, _ := option(argv, "-machine"); v != tc.machine {
				t.Errorf("-machine %q, want %q", v, tc.machine)
			}
			if v, _ := option(argv, "-cpu"); v != tc.cpu {
				t.Errorf("-cpu %q, want %q", v, tc.cpu)
			}
			if v, ok := option(argv, "-bios"); v != tc.firmware || ok != (tc.firmware != "") {
				t.Errorf("-bios %q, want %q", v, tc.firmware)
			}
			if v, _ := option(argv, "-append"); !strings.HasPrefix(v, "console="+tc.boot.Console+" root=/dev/vda ro") {
				t.Errorf("-append %q", v)
			}
			for _, dev := range []string{"virtio-blk-" + tc.bus + ",drive=", "virtio-serial-" + tc.bus} {
				if !slices.ContainsFunc(argv, func(a string) bool { return strings.HasPrefix(a, dev) }) {
					t.Errorf("no %s in %q", dev, argv)
				}
			}
			if !slices.Contains(argv, "virtserialport,chardev=agent,name=org.polyvisor.agent") {
				t.Errorf("no agent port in %q", argv)
			}
		})
	}
	s := testSpec(nil)
	s.Accel = "kvm"
	if v, _ := option(commandLine(s), "-cpu"); v != "max" {
		t.Errorf("KVM guest: -cpu %q", v)
	}
}

// TestForeignMachinesHaveTheirDevices asks each installed emulator whether it has the
// machine, CPU model and virtio devices commandLine names, so that a QEMU without them fails
// here rather than at a guest's start.
func TestForeignMachinesHaveTheirDevices(t *testing.T) {
	for _, tc := range foreignBoots {
		t.Run(tc.boot.QEMU, func(t *testing.T) {
			hostreq.Need(t, tc.boot.QEMU)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			machine, _, _ := strings.Cut(tc.machine, ",")
			help := func(args ...string) string {
				out, err := exec.CommandContext(ctx, tc.boot.QEMU, append([]string{"-machine", machine}, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("%s %q: %v\n%s", tc.boot.QEMU, args, err, out)
				}
				return string(out)
			}
			hasCPU := func(line string) bool { return slices.Contains(strings.Fields(line), tc.cpu) }
			if cpus := help("-cpu", "help"); !slices.ContainsFunc(strings.Split(cpus, "\n"), hasCPU) {
				t.Errorf("no CPU model %s", tc.cpu)
			}
			devices := help("-device", "help")
			for _, dev := range []string{"virtio-blk-" + tc.bus, "virtio-serial-" + tc.bus, "virtio-net-" + tc.bus, "virtserialport"} {
				if !strings.Contains(devices, `"`+dev+`"`) {
					t.Errorf("no device %s", dev)
				}
			}
		})
	}
}
