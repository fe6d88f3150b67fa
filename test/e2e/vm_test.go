package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// vmTemplates builds the VM templates the VM tests share, once.
var vmTemplates struct {
	built bool
	err   string
}

func requireVMTemplates(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if !vmTemplates.built {
		vmTemplates.built = true
		for _, args := range [][]string{
			{"template", "build", "busybox", "--type", "vm"},
			{"template", "build", "busybox", "--type", "vm", "--arch", "aarch64"},
			{"template", "build", "debian:bookworm", "--name", "debian", "--type", "vm"},
			{"template", "build", "busybox", "--name", "busybox-bios", "--type", "vm", "--firmware", "bios"},
			{"template", "build", "busybox", "--name", "buefi", "--type", "vm", "--firmware", "uefi"},
		} {
			began := time.Now()
			if out, errOut, code := env.main.Run(args...); code != 0 {
				vmTemplates.err = strings.Join(args, " ") + ": " + out + errOut
				break
			}
			t.Logf("%s took %s", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
		}
	}
	if vmTemplates.err != "" {
		t.Fatal(vmTemplates.err)
	}
}

func TestVMsBootUnderTCGAndRunCommands(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	vm := launch(t, d, "busybox", "e2e-vm", "--type", "vm")
	arm := launch(t, d, "busybox", "e2e-arm", "--type", "vm", "--arch", "aarch64")
	for _, g := range []api.Guest{vm, arm} {
		if g.State != api.StateRunning || g.Driver != "qemu" || g.PID <= 0 {
			t.Errorf("%s: %+v", g.Name, g)
		}
	}
	if arm.Class != "emulation" || arm.Accel != "tcg" || arm.Arch != "arm64" {
		t.Errorf("aarch64 guest: class %s accel %s arch %s", arm.Class, arm.Accel, arm.Arch)
	}
	if m := strings.TrimSpace(d.Must(t, "exec", arm.Name, "--", "uname", "-m")); m != "aarch64" {
		t.Errorf("uname -m in the arm guest: %q", m)
	}
	if m := strings.TrimSpace(d.Must(t, "exec", vm.Name, "--", "uname", "-m")); m != "x86_64" {
		t.Errorf("uname -m in the x86 guest: %q", m)
	}
	out, errOut, code := d.RunInput("piped\n", "exec", vm.Name, "--", "sh", "-c", "cat; echo e >&2; exit 6")
	if code != 6 || out != "piped\n" || errOut != "e\n" {
		t.Errorf("exec streams: code %d out %q err %q", code, out, errOut)
	}
	if log := d.Must(t, "console", vm.Name, "--log"); !strings.Contains(log, "Linux version") {
		t.Errorf("the console log does not show the kernel booting:\n%s", log)
	}
	var check api.HostCheck
	jsonUnmarshal(d.Must(t, "host", "check", "--format", "json"), &check)
	for _, v := range check.Classes {
		if v.Class == "qemu" && (!v.Works || v.Details["kvm"] == "") {
			t.Errorf("host check for qemu: %+v, want it working and saying why (not) KVM", v)
		}
	}
}

func TestDebianVM(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	g := launch(t, d, "debian", "e2e-debvm", "--type", "vm", "--memory", "512MiB")
	if osr := d.Must(t, "exec", g.Name, "--", "cat", "/etc/os-release"); !strings.Contains(osr, "bookworm") {
		t.Errorf("os-release in the Debian VM:\n%s", osr)
	}
}

func TestFirmwareBootsTheDisksOwnBootloader(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	for _, fw := range []struct{ firmware, template, banner string }{
		{"bios", "busybox-bios", "Q35"}, // SeaBIOS names the machine in its DMI data
		{"uefi", "buefi", "BdsDxe: "},   // OVMF's boot manager says what it boots
	} {
		t.Run(fw.firmware, func(t *testing.T) {
			var tmpl api.Template
			jsonUnmarshal(d.Must(t, "template", "show", fw.template+".vm.amd64", "--format", "json"), &tmpl)
			if tmpl.Boot == nil || tmpl.Boot.Firmware != fw.firmware || tmpl.Boot.Machine != "q35" || tmpl.Boot.Kernel != "" {
				t.Fatalf("firmware template's boot: %+v", tmpl.Boot)
			}
			g := launch(t, d, fw.template, "e2e-"+fw.firmware, "--type", "vm")
			// GRUB, not QEMU, loaded the kernel: it names the image it booted.
			if cmdline := d.Must(t, "exec", g.Name, "--", "cat", "/proc/cmdline"); !strings.Contains(cmdline, "BOOT_IMAGE=/boot/vmlinuz") || !strings.Contains(cmdline, "root=/dev/vda2") {
				t.Errorf("kernel command line of the firmware-booted guest: %q", cmdline)
			}
			// The name comes through fw_cfg, as the command line is the disk's.
			if name := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "hostname")); name != g.Name {
				t.Errorf("hostname %q, want %q", name, g.Name)
			}
			if log := d.Must(t, "console", g.Name, "--log"); !strings.Contains(log, "Booting `polyvisor'") || !strings.Contains(log, fw.banner) {
				t.Errorf("the console does not show %s running GRUB:\n%s", fw.firmware, log)
			}
			if fw.firmware == "uefi" {
				if g.Memory != vmimage.UEFIMinMemory {
					t.Errorf("a UEFI guest launched without --memory has %d bytes, want the template's least, %d", g.Memory, vmimage.UEFIMinMemory)
				}
				expectError(t, d, "need at least 512MiB", "launch", fw.template, "small", "--type", "vm", "--memory", "256MiB")
				return
			}
			// A partitioned disk grows too: the agent moves the end of the last
			// partition, then grows the file system in it.
			if out := d.Must(t, "config", "set", g.Name, "disk.root.size=200MiB"); !strings.Contains(out, "applied live") {
				t.Errorf("growing a firmware-booted VM's disk said: %s", out)
			}
			if kb := rootFSKiB(t, d, g.Name); kb < 140<<10 || kb > 170<<10 {
				t.Errorf("after a live grow to 200MiB (33 MiB of it before the root partition) the guest's / has %d KiB", kb)
			}
		})
	}
	expectError(t, d, "firmware", "template", "build", "busybox", "--name", "x", "--type", "vm", "--firmware", "coreboot")
	expectError(t, d, "amd64", "template", "build", "busybox", "--name", "x", "--type", "vm", "--firmware", "bios", "--arch", "aarch64")
}

func TestVMLifecycleAndFaults(t *testing.T) {
	requireVMTemplates(t)
	d := ownDaemonWithVM(t)
	g := launch(t, d, "busybox", "life", "--type", "vm")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo kept > /root/mark; sync")
	if out := d.Must(t, "config", "set", g.Name, "memory=320MiB"); !strings.Contains(out, "applies at next start") {
		t.Errorf("config set on a running VM said: %s", out)
	}
	// The root disk grows while the guest runs, and the guest uses it at once.
	if out := d.Must(t, "config", "set", g.Name, "disk.root.size=200MiB"); !strings.Contains(out, "applied live") {
		t.Errorf("growing a running VM's disk said: %s", out)
	}
	if kb := rootFSKiB(t, d, g.Name); kb < 180<<10 || kb > 200<<10 {
		t.Errorf("after a live grow to 200MiB the guest's / has %d KiB", kb)
	}
	expectError(t, d, "disks only grow", "config", "set", g.Name, "disk.root.size=100MiB")
	d.Must(t, "stop", g.Name, "--timeout", "30s")
	if info(t, d, g.Name).State != api.StateStopped || alive(g.PID) {
		t.Fatal("VM still running after stop")
	}
	// And while it is stopped, the guest growing its file system at boot.
	if out := d.Must(t, "config", "set", g.Name, "disk.root.size=300MiB"); !strings.Contains(out, "applies at next start") {
		t.Errorf("growing a stopped VM's disk said: %s", out)
	}
	d.Must(t, "start", g.Name)
	if out := d.Must(t, "exec", g.Name, "--", "cat", "/root/mark"); out != "kept\n" {
		t.Errorf("a file written before stop reads %q", out)
	}
	if kb := rootFSKiB(t, d, g.Name); kb < 280<<10 || kb > 300<<10 {
		t.Errorf("after growing the stopped VM's disk to 300MiB the guest's / has %d KiB", kb)
	}
	if disks := info(t, d, g.Name).Disks; len(disks) != 1 || disks[0].Size != 300<<20 || disks[0].Allocated <= 0 {
		t.Errorf("info's disks: %+v", disks)
	}
	if mem := d.Must(t, "exec", g.Name, "--", "sh", "-c", "grep MemTotal /proc/meminfo"); !strings.Contains(mem, "kB") || info(t, d, g.Name).Memory != 320<<20 {
		t.Errorf("after restart: %s, info memory %d", mem, info(t, d, g.Name).Memory)
	} else if kb, _ := strconv.Atoi(strings.Fields(mem)[1]); kb <= 256<<10 || kb > 320<<10 {
		// The kernel keeps some for itself: MemTotal is a little under the
		// RAM, and more than any 256 MiB guest (the old size) could show.
		t.Errorf("the guest sees MemTotal %d kB after memory=320MiB", kb)
	}
	// Guests outlive the daemon and are adopted again.
	running := info(t, d, g.Name)
	d.Kill()
	if !alive(running.PID) {
		t.Fatal("killing the daemon killed the VM")
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if out := d.Must(t, "exec", g.Name, "--", "echo", "adopted"); out != "adopted\n" {
		t.Errorf("exec after a daemon restart: %q", out)
	}
	// QEMU killed from outside: noticed.
	if p, err := os.FindProcess(running.PID); err == nil {
		p.Kill()
	}
	deadline := time.Now().Add(15 * time.Second)
	for info(t, d, g.Name).State != api.StateStopped {
		if time.Now().After(deadline) {
			t.Fatal("a killed QEMU is still reported running")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A hung QEMU (stopped from outside) answers neither the agent, ACPI
	// nor QMP: stop still ends it, by SIGKILL after the timeout.
	hung := launch(t, d, "busybox", "hung", "--type", "vm")
	if err := syscall.Kill(hung.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	d.Must(t, "stop", hung.Name, "--timeout", "2s")
	if took := time.Since(began); alive(hung.PID) || info(t, d, hung.Name).State != api.StateStopped || took > 30*time.Second {
		t.Errorf("stop of a hung QEMU: alive %v, took %s", alive(hung.PID), took)
	}
	d.Must(t, "delete", hung.Name)
	expectError(t, d, "arch", "launch", "busybox", "x", "--type", "vm", "--arch", "vax")
	expectError(t, d, "memory", "launch", "busybox", "x", "--type", "vm", "--memory", "4TiB")
	expectError(t, d, "template debian for amd64 VMs", "launch", "debian", "x", "--type", "vm")
	if gs, _ := d.Guests(); len(gs) != 1 {
		t.Errorf("failed launches left guests: %+v", gs)
	}
}

// ownDaemonWithVM is a daemon of the test's own sharing nothing but the
// busybox VM template, rebuilt there (seconds).
func ownDaemonWithVM(t *testing.T) *testenv.Daemon {
	t.Helper()
	d := ownDaemon(t)
	d.Must(t, "template", "build", "busybox", "--type", "vm")
	return d
}

// rootFSKiB is the size of the guest's root file system, as df sees it.
func rootFSKiB(t *testing.T, d *testenv.Daemon, name string) int {
	t.Helper()
	out := d.Must(t, "exec", name, "--", "df", "-k", "/")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) < 2 {
		t.Fatalf("df -k /: %q", out)
	}
	kb, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("df -k /: %q", out)
	}
	return kb
}
