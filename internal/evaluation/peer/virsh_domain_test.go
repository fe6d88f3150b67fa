package peer

import (
	"slices"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

// testBase is where a template's base disk would lie.
const testBase = "/state/templates/busybox-vm-amd64/disk.qcow2"

// microVMArgv is polyvisor's argv of a busybox microVM, as cmdline.go
// writes it.
var microVMArgv = []string{
	"/usr/bin/qemu-system-x86_64", "-name", "g",
	"-machine", "microvm,accel=tcg", "-cpu", "max", "-smp", "2", "-m", "512",
	"-nodefaults", "-no-user-config", "-display", "none",
	"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", "-runas", "polyvisor-qemu",
	"-kernel", "/state/templates/busybox-vm-amd64/vmlinux", "-initrd", "/state/templates/busybox-vm-amd64/initrd.img",
	"-append", "console=ttyS0 root=/dev/vda ro polyvisor.hostname=g",
	"-drive", "id=root,file=/state/guests/g/root.qcow2,format=qcow2,if=none,discard=unmap",
	"-device", "virtio-blk-device,drive=root,bootindex=1",
	"-device", "virtio-serial-device",
	"-chardev", "socket,id=agent,path=/run/polyvisor/g/agent.sock,server=on,wait=off",
	"-device", "virtserialport,chardev=agent,name=org.polyvisor.agent",
	"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
	"-qmp", "unix:/run/polyvisor/g/qmp.sock,server=on,wait=off",
}

func TestDomainXMLReproducesPolyvisorsBoot(t *testing.T) {
	vm := vmEnvOf(microVMArgv, testBase)
	text, err := DomainXML(Domain{Name: "g0", VM: vm, Disk: "/peer/g0/root.qcow2", AgentSocket: "/peer/g0/agent.sock", Console: "/peer/g0/console.log"})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(text); err != nil {
		t.Fatalf("the domain XML does not parse: %v\n%s", err, text)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("domain type", d.Type, "qemu")
	check("name", d.Name, "g0")
	check("memory", d.Memory.Value, uint(512))
	check("memory unit", d.Memory.Unit, "MiB")
	check("vcpus", d.VCPU.Value, uint(2))
	check("arch", d.OS.Type.Arch, "x86_64")
	check("machine", d.OS.Type.Machine, "microvm")
	check("kernel", d.OS.Kernel, vm.Kernel)
	check("initrd", d.OS.Initrd, vm.Initrd)
	check("cmdline", d.OS.Cmdline, vm.Append)
	check("cpu mode", d.CPU.Mode, "maximum")
	check("acpi", d.Features != nil && d.Features.ACPI != nil, true)
	dev := d.Devices
	check("emulator", dev.Emulator, "/usr/bin/qemu-system-x86_64")
	check("disks", len(dev.Disks), 1)
	disk := dev.Disks[0]
	check("disk file", disk.Source.File.File, "/peer/g0/root.qcow2")
	check("disk format", disk.Driver.Type, "qcow2")
	check("disk bus", disk.Target.Bus, "virtio")
	check("disk on virtio-mmio", disk.Address != nil && disk.Address.VirtioMMIO != nil, true)
	check("channels", len(dev.Channels), 1)
	ch := dev.Channels[0]
	check("agent socket", ch.Source.UNIX.Path, "/peer/g0/agent.sock")
	check("agent socket mode", ch.Source.UNIX.Mode, "bind")
	check("agent port", ch.Target.VirtIO.Name, "org.polyvisor.agent")
	check("serial to file", dev.Serials[0].Source.File.Path, "/peer/g0/console.log")
	check("interfaces", len(dev.Interfaces), 0)
	check("balloon", dev.MemBalloon.Model, "none")
	usbNone, serialOnMMIO := false, false
	for _, c := range dev.Controllers {
		usbNone = usbNone || c.Type == "usb" && c.Model == "none"
		serialOnMMIO = serialOnMMIO || c.Type == "virtio-serial" && c.Address != nil && c.Address.VirtioMMIO != nil
	}
	check("usb controller none", usbNone, true)
	check("virtio-serial on virtio-mmio", serialOnMMIO, true)
	for _, s := range []string{"/state/guests", "/run/polyvisor"} {
		if strings.Contains(text, s) {
			t.Errorf("the domain still points at polyvisor's guest files (%s):\n%s", s, text)
		}
	}
}

func TestDomainXMLFollowsAccelAndBus(t *testing.T) {
	argv := slices.Clone(microVMArgv)
	for i, a := range argv {
		switch a {
		case "microvm,accel=tcg":
			argv[i] = "q35,accel=kvm"
		case "virtio-blk-device,drive=root,bootindex=1":
			argv[i] = "virtio-blk-pci,drive=root,bootindex=1"
		}
	}
	vm := vmEnvOf(argv, testBase)
	vm.Accel = "kvm"
	text, err := DomainXML(Domain{Name: "g1", VM: vm, Disk: "/d", AgentSocket: "/s", Console: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(text); err != nil {
		t.Fatal(err)
	}
	if d.Type != "kvm" || d.OS.Type.Machine != "q35" || d.Devices.Disks[0].Address != nil {
		t.Errorf("type %q machine %q disk address %+v, want kvm, q35 and libvirt's own PCI address", d.Type, d.OS.Type.Machine, d.Devices.Disks[0].Address)
	}
}

// Bad input: one error that names the field.
func TestDomainXMLRefusesWhatItCannotBoot(t *testing.T) {
	without := func(flag string) []string {
		i := slices.Index(microVMArgv, flag)
		return slices.Delete(slices.Clone(microVMArgv), i, i+2)
	}
	with := func(flag, value string) []string {
		argv := slices.Clone(microVMArgv)
		argv[slices.Index(argv, flag)+1] = value
		return argv
	}
	for _, c := range []struct {
		name string
		edit func(*VMEnv)
		want string
	}{
		{"no -m", func(vm *VMEnv) { vm.Argv = without("-m") }, "no -m"},
		{"no -smp", func(vm *VMEnv) { vm.Argv = without("-smp") }, "no -smp"},
		{"no -machine", func(vm *VMEnv) { vm.Argv = without("-machine") }, "no -machine"},
		{"bad -m", func(vm *VMEnv) { vm.Argv = with("-m", "lots") }, `-m "lots"`},
		{"bad -smp", func(vm *VMEnv) { vm.Argv = with("-smp", "0") }, `-smp "0"`},
		{"empty argv", func(vm *VMEnv) { vm.Argv = nil }, "vm argv is empty"},
		{"not qemu", func(vm *VMEnv) { vm.Argv = append([]string{"/bin/true"}, microVMArgv[1:]...) }, "not a qemu-system-ARCH"},
		{"firmware boot", func(vm *VMEnv) { vm.Kernel = "" }, "direct-kernel templates only"},
		{"no agent port", func(vm *VMEnv) { vm.AgentPort = "" }, "VMEnv.AgentPort"},
		{"bad accel", func(vm *VMEnv) { vm.Accel = "hvf" }, `VMEnv.Accel "hvf"`},
		{"emulator by name", func(vm *VMEnv) { vm.Argv = append([]string{"qemu-system-x86_64"}, microVMArgv[1:]...) }, `emulator "qemu-system-x86_64" is not a path`},
	} {
		vm := vmEnvOf(microVMArgv, testBase)
		c.edit(vm)
		_, err := DomainXML(Domain{Name: "g", VM: vm, Disk: "/d", AgentSocket: "/s", Console: "/c"})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line with %q", c.name, err, c.want)
		}
	}
	if _, err := DomainXML(Domain{Name: "g"}); err == nil || !strings.Contains(err.Error(), "VMEnv") {
		t.Errorf("no VM: err = %v, want it to name VMEnv", err)
	}
}

func TestVirshRefusesBadGuestIDs(t *testing.T) {
	v := NewVirsh()
	v.env.Dir = "/tmp/peer"
	v.daemon = &virshDaemon{}
	for _, id := range []string{"", "../x", "a/b", ".hidden", "-flag", "a b", strings.Repeat("x", 100)} {
		err := v.checkID(id)
		if err == nil || !strings.Contains(err.Error(), "guest") {
			t.Errorf("checkID(%q) = %v, want a refusal", id, err)
		}
	}
	if err := v.checkID("g-0.a_b"); err != nil {
		t.Errorf("checkID(g-0.a_b) = %v", err)
	}
}
