package qemu

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// vmSpec is what a QEMU command line is made from.
type vmSpec struct {
	Def         *guest.Definition
	Boot        api.TemplateBoot
	TemplateDir string
	Disk        string       // the guest's root overlay
	Data        []dataDrive  // its data disks, in order, after the root disk
	Accel       string       // kvm or tcg
	QMP, Agent  string       // socket paths
	TCGCmdline  string       // kernel options a guest of this arch needs under TCG
	UEFI        uefiFirmware // with Boot.Firmware uefi
	NICs        []network.NIC
	Confine     *confinement // nil: QEMU runs as root, unsandboxed
	// Incoming starts the machine paused, waiting for a migration's state
	// (migrate-incoming names where), which it runs from once resumed.
	Incoming bool
}

// commandLine returns QEMU's argv. Templates without firmware boot fast:
// QEMU loads their kernel and initrd itself (direct kernel boot), with the
// root disk and the agent's virtio-serial port on the machine's virtio
// transport (virtio-mmio on microvm and virt, PCI on pseries, channel I/O on
// s390-ccw-virtio). Firmware-booted templates run on q35 with the devices
// on PCI, and the firmware boots the disk's own bootloader. Either way the
// serial console is the monitor's pty (stdio) and QMP is on a socket.
func commandLine(s vmSpec) []string {
	def := s.Def
	argv := []string{
		s.Boot.QEMU,
		"-name", def.Name,
		"-machine", s.Boot.Machine + machineOptions(s.Boot.Machine, s.Accel) + ",accel=" + s.Accel,
		"-cpu", cpuModel(s.Boot, s.Accel),
		"-smp", strconv.Itoa(def.CPUs),
		"-m", strconv.FormatInt(int64(def.Memory)>>20, 10),
		"-nodefaults", "-no-user-config", "-display", "none",
	}
	if s.Boot.Machine == "virt" && strings.HasSuffix(s.Boot.QEMU, "riscv64") {
		// The kernel runs in supervisor mode over an SBI firmware: QEMU's OpenSBI.
		argv = append(argv, "-bios", "default")
	}
	argv = append(argv, s.Confine.args()...)
	bus := virtioBus(s.Boot.Machine)
	if s.Boot.Firmware == "" {
		cmdline := "console=" + s.Boot.Console + " " + s.Boot.Cmdline + " " + vmimage.HostnameParam + "=" + def.Name
		if s.Accel == "tcg" && s.TCGCmdline != "" {
			// Under TCG the x86 kernel's TSC calibration against the PIT often
			// times out on a busy host, and then it hangs: it is told the rate.
			cmdline += " " + s.TCGCmdline
		}
		argv = append(argv,
			"-kernel", s.TemplateDir+"/"+s.Boot.Kernel,
			"-initrd", s.TemplateDir+"/"+s.Boot.Initrd,
			"-append", strings.TrimSpace(cmdline))
	} else {
		// The disk's bootloader holds the command line: the guest's name
		// reaches it through fw_cfg instead. SeaBIOS is q35's default
		// firmware; UEFI is OVMF on pflash.
		bus = "pci"
		argv = append(argv, "-fw_cfg", "name="+vmimage.HostnameFwCfg+",string="+def.Name)
		if s.Boot.Firmware == vmimage.FirmwareUEFI {
			argv = append(argv,
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+s.UEFI.Code,
				"-drive", "if=pflash,format=raw,unit=1,file="+s.UEFI.Vars)
		}
	}
	for i, nic := range s.NICs {
		// QEMU makes the tap (it is root until it has opened all it needs)
		// and the tap goes away with QEMU;
		// the driver joins it to the bridge once QEMU is up. No vhost-net
		// here (see DESIGN.md).
		id := "net" + strconv.Itoa(i)
		argv = append(argv,
			"-netdev", "tap,id="+id+",ifname="+nic.HostIf+",script=no,downscript=no",
			"-device", "virtio-net-"+bus+",netdev="+id+",mac="+nic.MAC.String())
	}
	// auto-read-only=off: QEMU opens each disk writable once and for all.
	// Otherwise it reopens the disk by path, read-only or writable, each
	// time its users change (a migration's end, one waiting to arrive),
	// which it cannot do once it has dropped root.
	driveOpts := ",format=qcow2,if=none,discard=unmap,auto-read-only=off"
	argv = append(argv,
		"-drive", "id="+driveID("root")+",file="+s.Disk+driveOpts,
		"-device", "virtio-blk-"+bus+",drive="+driveID("root")+",bootindex=1")
	for _, disk := range s.Data {
		// After the root disk, so the guest names them vdb, vdc...; no
		// bootindex: the firmware boots the root disk alone.
		argv = append(argv,
			"-drive", "id="+driveID(disk.Name)+",file="+disk.Path+driveOpts,
			"-device", "virtio-blk-"+bus+",drive="+driveID(disk.Name))
	}
	if s.Incoming {
		argv = append(argv, "-S", "-incoming", "defer")
	}
	return append(argv,
		"-device", "virtio-serial-"+bus,
		"-chardev", "socket,id=agent,path="+s.Agent+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=org.polyvisor.agent",
		// The console is the monitor's pty; signal=off keeps a typed ^C
		// for the guest instead of killing QEMU.
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-qmp", "unix:"+s.QMP+",server=on,wait=off",
	)
}

// virtioBus returns the suffix of the virtio devices' names on machine:
// virtio-blk-device (virtio-mmio), virtio-blk-pci, virtio-blk-ccw.
func virtioBus(machine string) string {
	switch machine {
	case "pseries", "q35":
		return "pci"
	case "s390-ccw-virtio":
		return "ccw"
	}
	return "device" // microvm, virt
}

// cpuModel returns the -cpu of a guest. Under KVM it is the host's CPU
// ("max"); under TCG, a model each emulator has: "max" emulates costly
// extensions on aarch64 (pointer authentication), and QEMU 7.2 has no
// "max" for riscv64 or ppc64.
func cpuModel(boot api.TemplateBoot, accel string) string {
	if accel != "tcg" {
		return "max"
	}
	switch {
	case strings.HasSuffix(boot.QEMU, "aarch64"):
		return "cortex-a57"
	case strings.HasSuffix(boot.QEMU, "riscv64"):
		return "rv64"
	case strings.HasSuffix(boot.QEMU, "ppc64"):
		return "power9"
	case strings.HasSuffix(boot.QEMU, "-arm"):
		return "cortex-a15" // ARMv7 with LPAE, which the armmp-lpae kernel needs
	}
	return "max"
}

// machineOptions returns options of machine under accel, each after a
// comma. pseries asks by default for Spectre mitigations that TCG does not
// emulate, and QEMU warns of each on every start: say they are absent.
func machineOptions(machine, accel string) string {
	if machine == "pseries" && accel == "tcg" {
		return ",cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off"
	}
	return ""
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
