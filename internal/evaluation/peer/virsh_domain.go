package peer

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Domain is what a libvirt domain of the virsh peer is made from: a
// polyvisor VM's boot and the guest's own files.
type Domain struct {
	Name string
	VM   *VMEnv
	// Disk is the guest's qcow2 overlay of VM.Base; AgentSocket the unix
	// socket libvirt listens on for the agent's port; Console the file the
	// serial console is written to.
	Disk, AgentSocket, Console string
}

// qemuBoot is what a domain takes from polyvisor's QEMU argv.
type qemuBoot struct {
	emulator, arch, machine, cpu string
	cpus, memoryMiB              uint
	// mmio: the devices are virtio-mmio (virtio-blk-device), as on
	// microvm; otherwise they are on PCI.
	mmio bool
}

// parseQEMUArgv reads the machine, CPU, vCPUs, memory and bus of a
// polyvisor VM's argv.
func parseQEMUArgv(argv []string) (qemuBoot, error) {
	var b qemuBoot
	if len(argv) == 0 {
		return b, fmt.Errorf("vm argv is empty: bench passes the QEMU argv of a running polyvisor VM")
	}
	b.emulator = argv[0]
	var ok bool
	if b.arch, ok = strings.CutPrefix(filepath.Base(argv[0]), "qemu-system-"); !ok {
		return b, fmt.Errorf("vm argv: %q is not a qemu-system-ARCH emulator", argv[0])
	}
	for i := 1; i < len(argv)-1; i++ {
		v := argv[i+1]
		switch argv[i] {
		case "-machine", "-M":
			b.machine = strings.Split(v, ",")[0]
		case "-cpu":
			b.cpu = strings.Split(v, ",")[0]
		case "-smp":
			n, err := strconv.ParseUint(strings.Split(v, ",")[0], 10, 32)
			if err != nil || n == 0 {
				return b, fmt.Errorf("vm argv: -smp %q is not a count of vCPUs", v)
			}
			b.cpus = uint(n)
		case "-m":
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.Split(v, ",")[0], "M"), 10, 32)
			if err != nil || n == 0 {
				return b, fmt.Errorf("vm argv: -m %q is not a size in MiB", v)
			}
			b.memoryMiB = uint(n)
		case "-device":
			if strings.HasPrefix(v, "virtio-blk-device") {
				b.mmio = true
			}
		}
	}
	for flag, set := range map[string]bool{"-machine": b.machine != "", "-smp": b.cpus != 0, "-m": b.memoryMiB != 0} {
		if !set {
			return b, fmt.Errorf("vm argv has no %s: bench passes the QEMU argv of a running polyvisor VM", flag)
		}
	}
	return b, nil
}

// DomainXML is the libvirt domain that boots d.VM as polyvisor's QEMU
// does: the same emulator, machine, accelerator, CPU model, vCPUs and
// memory; the kernel, initrd and command line booted directly; the root
// disk as virtio-blk on the same bus; the agent's virtio-serial port; the
// serial console to a file; no NIC, no USB, no balloon. ACPI stays on as in
// QEMU's default (libvirt turns it off unless told): microvm finds its
// virtio-mmio devices through it.
func DomainXML(d Domain) (string, error) {
	vm := d.VM
	if vm == nil {
		return "", fmt.Errorf("domain %s: no VM boot: the virsh peer needs bench's VMEnv", d.Name)
	}
	if vm.Kernel == "" || vm.Initrd == "" {
		return "", fmt.Errorf("domain %s: the VM has no -kernel/-initrd: the virsh peer boots direct-kernel templates only (firmware ones are not compared)", d.Name)
	}
	if vm.AgentPort == "" {
		return "", fmt.Errorf("domain %s: VMEnv.AgentPort is empty: it names the agent's virtio-serial port", d.Name)
	}
	b, err := parseQEMUArgv(vm.Argv)
	if err != nil {
		return "", fmt.Errorf("domain %s: %w", d.Name, err)
	}
	if !filepath.IsAbs(b.emulator) {
		return "", fmt.Errorf("domain %s: emulator %q is not a path: the virsh peer's Setup resolves it", d.Name, b.emulator)
	}
	domType := "qemu"
	switch vm.Accel {
	case "kvm":
		domType = "kvm"
	case "tcg":
	default:
		return "", fmt.Errorf("domain %s: VMEnv.Accel %q: use kvm or tcg", d.Name, vm.Accel)
	}
	var addr *libvirtxml.DomainAddress
	if b.mmio {
		addr = &libvirtxml.DomainAddress{VirtioMMIO: &libvirtxml.DomainAddressVirtioMMIO{}}
	}
	serialIndex := uint(0)
	dom := libvirtxml.Domain{
		Type:   domType,
		Name:   d.Name,
		Memory: &libvirtxml.DomainMemory{Value: b.memoryMiB, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: b.cpus},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: b.arch, Machine: b.machine, Type: "hvm"},
			Kernel:  vm.Kernel,
			Initrd:  vm.Initrd,
			Cmdline: vm.Append,
		},
		CPU:        domainCPU(b.cpu),
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Emulator: b.emulator,
			Disks: []libvirtxml.DomainDisk{{
				Device:  "disk",
				Driver:  &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Discard: "unmap"},
				Source:  &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Disk}},
				Target:  &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
				Address: addr,
			}},
			Controllers: []libvirtxml.DomainController{
				{Type: "virtio-serial", Index: &serialIndex, Address: addr},
				// libvirt adds a PCI USB controller to x86 machines unless told.
				{Type: "usb", Model: "none"},
			},
			Channels: []libvirtxml.DomainChannel{{
				Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: d.AgentSocket}},
				Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: vm.AgentPort}},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: d.Console}},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if b.arch == "x86_64" || b.arch == "i386" {
		dom.Features = &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}}
	}
	return dom.Marshal()
}

// domainCPU is the <cpu> of QEMU's -cpu: "max" is libvirt's maximum mode,
// "host" its host-passthrough, any other a named model.
func domainCPU(model string) *libvirtxml.DomainCPU {
	switch model {
	case "":
		return nil
	case "max":
		return &libvirtxml.DomainCPU{Mode: "maximum"}
	case "host":
		return &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	return &libvirtxml.DomainCPU{Mode: "custom", Match: "exact", Model: &libvirtxml.DomainCPUModel{Value: model, Fallback: "forbid"}}
}
