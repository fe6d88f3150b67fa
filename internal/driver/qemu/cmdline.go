package qemu

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/guest"
)

// vmSpec is what a QEMU command line is made from.
type vmSpec struct {
	Def         *guest.Definition
	Boot        api.TemplateBoot
	TemplateDir string
	Disk        string // the guest's root overlay
	Accel       string // kvm or tcg
	QMP, Agent  string // socket paths
	TSCkHz      int    // the host's TSC rate, for x86 guests under TCG
}

// hostTSCkHz reads the host CPU's rate from /proc/cpuinfo, or 0.
func hostTSCkHz() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err == nil && mhz > 0 {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

// commandLine returns QEMU's argv: direct kernel boot of the template's
// kernel and initrd on a virtio-mmio machine (microvm, virt), the root disk
// and the agent's virtio-serial port as virtio-mmio devices, the serial
// console on the monitor's pty (stdio), QMP on a socket.
func commandLine(s vmSpec) []string {
	def := s.Def
	cpu := "max"
	if s.Boot.Machine == "virt" && s.Accel == "tcg" && strings.HasSuffix(s.Boot.QEMU, "aarch64") {
		cpu = "cortex-a57" // "max" under TCG emulates costly extensions (pointer authentication)
	}
	machine := s.Boot.Machine + ",accel=" + s.Accel
	cmdline := "console=" + s.Boot.Console + " " + s.Boot.Cmdline
	if s.Accel == "tcg" && strings.HasSuffix(s.Boot.QEMU, "x86_64") && s.TSCkHz > 0 {
		// Under TCG the guest's TSC runs at the host's rate, but the
		// kernel's calibration against the PIT often times out on a busy
		// host, and then it hangs half the time: tell it the rate.
		cmdline += " tsc_early_khz=" + strconv.Itoa(s.TSCkHz)
	}
	return []string{
		s.Boot.QEMU,
		"-name", def.Name,
		"-machine", machine,
		"-cpu", cpu,
		"-smp", strconv.Itoa(def.CPUs),
		"-m", strconv.FormatInt(int64(def.Memory)>>20, 10),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", s.TemplateDir + "/" + s.Boot.Kernel,
		"-initrd", s.TemplateDir + "/" + s.Boot.Initrd,
		"-append", strings.TrimSpace(cmdline),
		"-drive", "id=root,file=" + s.Disk + ",format=qcow2,if=none,discard=unmap",
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=" + s.Agent + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=org.polyvisor.agent",
		// The console is the monitor's pty; signal=off keeps a typed ^C
		// for the guest instead of killing QEMU.
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-qmp", "unix:" + s.QMP + ",server=on,wait=off",
	}
}

// lastConsoleLines returns the end of a console log on one line, for errors.
func lastConsoleLines(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return "(nothing on the console)"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var keep []string
	for _, l := range lines[max(0, len(lines)-3):] {
		keep = append(keep, strings.TrimSpace(l))
	}
	return fmt.Sprintf("%q", strings.Join(keep, " | "))
}

// oneLine keeps the last meaningful line of a tool's output.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
