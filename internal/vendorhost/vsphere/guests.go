package vsphere

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// vmProps are the properties a Guest is made of.
var vmProps = []string{"name", "config", "runtime.powerState", "guest", "network", "snapshot"}

// vms returns the datacenter's virtual machines, templates left out,
// with props (which include config or config.template).
func (h *host) vms(ctx context.Context, props []string) ([]mo.VirtualMachine, error) {
	folders, err := h.dc.Folders(ctx)
	if err != nil {
		return nil, h.wrap(ctx, "list guests", err)
	}
	v, err := view.NewManager(h.vc).CreateContainerView(ctx, folders.VmFolder.Reference(), []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, h.wrap(ctx, "list guests", err)
	}
	defer v.Destroy(context.WithoutCancel(ctx))
	var all []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, props, &all); err != nil {
		return nil, h.wrap(ctx, "list guests", err)
	}
	out := all[:0]
	for _, vm := range all {
		if vm.Config != nil && vm.Config.Template {
			continue
		}
		out = append(out, vm)
	}
	slices.SortFunc(out, func(a, b mo.VirtualMachine) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// vm finds the one guest named name, with vmProps.
func (h *host) vm(ctx context.Context, name string) (mo.VirtualMachine, *object.VirtualMachine, error) {
	all, err := h.vms(ctx, []string{"name", "config.template"})
	if err != nil {
		return mo.VirtualMachine{}, nil, err
	}
	var found []mo.VirtualMachine
	for _, vm := range all {
		if vm.Name == name {
			found = append(found, vm)
		}
	}
	switch len(found) {
	case 0:
		return mo.VirtualMachine{}, nil, fmt.Errorf("vsphere %s: guest %s: %w: the datacenter %s has no VM of that name", h.name, name, vendorhost.ErrNotFound, h.dc.Name())
	case 1:
		var vm mo.VirtualMachine
		if err := property.DefaultCollector(h.vc).RetrieveOne(ctx, found[0].Self, vmProps, &vm); err != nil {
			return vm, nil, h.wrap(ctx, "guest "+name, err)
		}
		return vm, object.NewVirtualMachine(h.vc, vm.Self), nil
	}
	return mo.VirtualMachine{}, nil, fmt.Errorf("vsphere %s: guest %s: %w: %d VMs of the datacenter have that name: rename all but one in the vSphere client", h.name, name, vendorhost.ErrConflict, len(found))
}

// List returns the datacenter's VMs.
func (h *host) List(ctx context.Context) ([]vendorhost.Guest, error) {
	all, err := h.vms(ctx, vmProps)
	if err != nil {
		return nil, err
	}
	nets, err := h.networkNames(ctx, all...)
	if err != nil {
		return nil, err
	}
	out := make([]vendorhost.Guest, 0, len(all))
	for _, vm := range all {
		out = append(out, guestOf(vm, nets))
	}
	return out, nil
}

// Get returns one VM.
func (h *host) Get(ctx context.Context, name string) (vendorhost.Guest, error) {
	vm, _, err := h.vm(ctx, name)
	if err != nil {
		return vendorhost.Guest{}, err
	}
	nets, err := h.networkNames(ctx, vm)
	if err != nil {
		return vendorhost.Guest{}, err
	}
	return guestOf(vm, nets), nil
}

// networkNames maps what a NIC's backing names its network by (a
// portgroup key for a distributed switch, the network's name otherwise)
// to the network's name.
func (h *host) networkNames(ctx context.Context, vms ...mo.VirtualMachine) (map[string]string, error) {
	var refs []types.ManagedObjectReference
	for _, vm := range vms {
		for _, n := range vm.Network {
			if n.Type == "DistributedVirtualPortgroup" && !slices.Contains(refs, n) {
				refs = append(refs, n)
			}
		}
	}
	names := map[string]string{}
	if len(refs) == 0 {
		return names, nil
	}
	var pgs []mo.DistributedVirtualPortgroup
	if err := property.DefaultCollector(h.vc).Retrieve(ctx, refs, []string{"name", "key"}, &pgs); err != nil {
		return nil, h.wrap(ctx, "network names", err)
	}
	for _, pg := range pgs {
		names[pg.Key] = pg.Name
	}
	return names, nil
}

// guestOf makes a Guest of a VM's properties.
func guestOf(vm mo.VirtualMachine, nets map[string]string) vendorhost.Guest {
	g := vendorhost.Guest{Name: vm.Name, State: stateOf(vm.Runtime.PowerState), Detail: vm.Self.String()}
	if c := vm.Config; c != nil {
		g.CPUs = int(c.Hardware.NumCPU)
		g.MemoryMiB = int64(c.Hardware.MemoryMB)
		g.Firmware = firmwareOf(c.Firmware)
		g.OS = c.GuestId
		for _, d := range c.Hardware.Device {
			switch dev := d.(type) {
			case *types.VirtualDisk:
				g.Disks = append(g.Disks, diskOf(dev))
			case types.BaseVirtualEthernetCard:
				g.NICs = append(g.NICs, nicOf(dev, nets))
			}
		}
	}
	if vm.Guest != nil {
		g.IPs = ipsOf(vm.Guest)
	}
	return g
}

// stateOf maps a power state to polyvisor's words.
func stateOf(s types.VirtualMachinePowerState) string {
	switch s {
	case types.VirtualMachinePowerStatePoweredOn:
		return vendorhost.StateRunning
	case types.VirtualMachinePowerStatePoweredOff:
		return vendorhost.StateStopped
	case types.VirtualMachinePowerStateSuspended:
		return vendorhost.StateSuspended
	}
	return vendorhost.StateUnknown
}

// firmwareOf maps vSphere's firmware (bios, efi) to polyvisor's.
func firmwareOf(fw string) string {
	if fw == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		return "uefi"
	}
	return "bios"
}

func diskOf(d *types.VirtualDisk) vendorhost.Disk {
	disk := vendorhost.Disk{Capacity: d.CapacityInBytes, Format: "vmdk"}
	if disk.Capacity == 0 {
		disk.Capacity = d.CapacityInKB * 1024
	}
	if b, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		disk.Path = b.GetVirtualDeviceFileBackingInfo().FileName
	}
	if _, raw := d.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo); raw {
		disk.Format = "rdm"
	}
	return disk
}

func nicOf(d types.BaseVirtualEthernetCard, nets map[string]string) vendorhost.NIC {
	card := d.GetVirtualEthernetCard()
	nic := vendorhost.NIC{MAC: strings.ToLower(card.MacAddress), Model: nicModel(d)}
	switch b := card.Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		nic.Network = b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		nic.Network = nets[b.Port.PortgroupKey]
		if nic.Network == "" {
			nic.Network = b.Port.PortgroupKey
		}
	case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
		nic.Network = b.OpaqueNetworkId
	}
	return nic
}

// nicModel names a NIC's emulated model as polyvisor and OVF do.
func nicModel(d types.BaseVirtualEthernetCard) string {
	switch d.(type) {
	case *types.VirtualE1000:
		return "e1000"
	case *types.VirtualE1000e:
		return "e1000e"
	case *types.VirtualVmxnet3, *types.VirtualVmxnet3Vrdma:
		return "vmxnet3"
	case *types.VirtualVmxnet2:
		return "vmxnet2"
	case *types.VirtualVmxnet:
		return "vmxnet"
	case *types.VirtualPCNet32:
		return "pcnet32"
	case *types.VirtualSriovEthernetCard:
		return "sriov"
	}
	return ""
}

// ipsOf returns the addresses VMware Tools reports, link-local ones left
// out; the primary address when Tools gives no per-NIC list.
func ipsOf(gi *types.GuestInfo) []string {
	var ips []string
	for _, n := range gi.Net {
		for _, ip := range n.IpAddress {
			if !strings.HasPrefix(strings.ToLower(ip), "fe80:") && !slices.Contains(ips, ip) {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 && gi.IpAddress != "" {
		ips = append(ips, gi.IpAddress)
	}
	return ips
}
