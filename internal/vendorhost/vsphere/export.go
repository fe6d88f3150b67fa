package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	govovf "github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/ovf"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
	"github.com/polyvisor/polyvisor/internal/vmdef"
)

// Export downloads a powered-off VM's disks through an NFC lease and
// packs them with an OVF descriptor and a SHA256 manifest into
// dir/NAME.ova. The descriptor is the host's (OvfManager, with the NICs'
// MACs), checked to state the VM's CPUs, memory, firmware and MACs; a
// host that writes none, or one that does not, gets polyvisor's own for a
// single-disk VM. A failure leaves nothing in dir.
func (h *host) Export(ctx context.Context, name, dir string, progress vendorhost.Progress) (_ vendorhost.Exported, err error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return vendorhost.Exported{}, err
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		return vendorhost.Exported{}, fmt.Errorf("vsphere %s: guest %s: export: %w: it is %s: stop it first", h.name, name, vendorhost.ErrConflict, stateOf(vm.Runtime.PowerState))
	}
	nets, err := h.networkNames(ctx, vm)
	if err != nil {
		return vendorhost.Exported{}, err
	}
	g := guestOf(vm, nets)
	if len(g.Disks) == 0 {
		return vendorhost.Exported{}, fmt.Errorf("vsphere %s: guest %s: export: %w: it has no disk", h.name, name, vendorhost.ErrInvalid)
	}
	base := fileBase(name)
	ovaPath := filepath.Join(dir, base+".ova")
	if _, err := os.Lstat(ovaPath); err == nil {
		return vendorhost.Exported{}, fmt.Errorf("vsphere %s: guest %s: export: %w: %s exists already", h.name, name, vendorhost.ErrConflict, ovaPath)
	}
	// The disks are downloaded beside the OVA, then packed and removed.
	work, err := os.MkdirTemp(dir, ".export-"+base+"-")
	if err != nil {
		return vendorhost.Exported{}, fmt.Errorf("vsphere %s: guest %s: export: %w", h.name, name, err)
	}
	defer os.RemoveAll(work)

	files, err := h.downloadDisks(ctx, obj, name, base, work, progress)
	if err != nil {
		return vendorhost.Exported{}, err
	}
	desc, err := h.descriptor(ctx, obj, g, base, files)
	if err != nil {
		return vendorhost.Exported{}, err
	}
	members := make([]ovf.Member, len(files))
	for i, f := range files {
		members[i] = ovf.Member{Name: f.Path, Path: filepath.Join(work, f.Path)}
	}
	if err := writeOVA(ctx, ovaPath, base+".ovf", desc, members, progress); err != nil {
		return vendorhost.Exported{}, fmt.Errorf("vsphere %s: guest %s: export: %w", h.name, name, err)
	}
	return vendorhost.Exported{Path: ovaPath, Guest: g}, nil
}

// downloadDisks takes an export lease of the VM and downloads its disks
// into work, named BASE-diskN.vmdk; it returns them as OVF files.
func (h *host) downloadDisks(ctx context.Context, obj *object.VirtualMachine, name, base, work string, progress vendorhost.Progress) (_ []types.OvfFile, err error) {
	lease, release, err := h.exportLease(ctx, obj, name)
	if err != nil {
		return nil, err
	}
	defer release()
	defer func() {
		if err != nil {
			h.abortLease(ctx, lease)
		}
	}()
	what := "guest " + name + ": export"
	if err := h.waitLease(ctx, lease); err != nil {
		return nil, h.wrap(ctx, what, err)
	}
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		return nil, h.wrap(ctx, what, err)
	}
	var items []nfc.FileItem
	var total int64
	for _, item := range info.Items {
		if isDisk(info, item) {
			items = append(items, item)
			total += item.Size
		}
	}
	t := h.newTransfer(ctx, lease, "downloading "+name, total, progress)
	defer t.close()
	var files []types.OvfFile
	for i, item := range items {
		file := fmt.Sprintf("%s-disk%d.vmdk", base, i+1)
		n, err := t.download(item, filepath.Join(work, file))
		if err != nil {
			return nil, h.wrap(ctx, what+": download disk "+item.Path, err)
		}
		files = append(files, types.OvfFile{DeviceId: item.DeviceId, Path: file, Size: n})
	}
	if err := lease.Complete(ctx); err != nil {
		return nil, h.wrap(ctx, what, err)
	}
	return files, nil
}

// isDisk says whether a lease item is a disk (not an ISO or NVRAM).
func isDisk(info *nfc.LeaseInfo, item nfc.FileItem) bool {
	for _, d := range info.DeviceUrl {
		if d.Key == item.DeviceId {
			return d.Disk != nil && *d.Disk
		}
	}
	return strings.HasSuffix(item.Path, ".vmdk")
}

// exportLease asks for the VM's export lease (ExportVm). A host without
// that call (vcsim) exports a snapshot taken for the purpose instead,
// which release removes again.
func (h *host) exportLease(ctx context.Context, obj *object.VirtualMachine, name string) (*nfc.Lease, func(), error) {
	what := "guest " + name + ": export"
	lease, err := obj.Export(ctx)
	if err == nil {
		return lease, func() {}, nil
	}
	if !notImplemented(err) {
		return nil, nil, h.wrap(ctx, what, err)
	}
	snap := fmt.Sprintf("polyvisor-export-%d", time.Now().UnixNano())
	task, err := obj.CreateSnapshot(ctx, snap, "taken by polyvisor to export the VM; removed after", false, false)
	if err == nil {
		err = h.waitTask(ctx, task)
	}
	if err != nil {
		return nil, nil, h.wrap(ctx, what+": snapshot", err)
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		ref, err := obj.FindSnapshot(rctx, snap)
		if err == nil {
			err = h.removeSnapshotRef(rctx, *ref)
		}
		if err != nil {
			slog.Warn("vsphere: could not remove the export's snapshot: remove it in the vSphere client", "host", h.name, "guest", name, "snapshot", snap, "err", err)
		}
	}
	ref, err := obj.FindSnapshot(ctx, snap)
	if err != nil {
		release()
		return nil, nil, h.wrap(ctx, what+": snapshot", err)
	}
	res, err := methods.ExportSnapshot(ctx, h.vc, &types.ExportSnapshot{This: *ref})
	if err != nil {
		release()
		return nil, nil, h.wrap(ctx, what+": export snapshot", err)
	}
	return nfc.NewLease(h.vc, res.Returnval), release, nil
}

// descriptor returns the OVF descriptor of the export: the host's when
// it writes one that states g, else polyvisor's own.
func (h *host) descriptor(ctx context.Context, obj *object.VirtualMachine, g vendorhost.Guest, base string, files []types.OvfFile) ([]byte, error) {
	what := "guest " + g.Name + ": export: OVF descriptor"
	res, err := govovf.NewManager(h.vc).CreateDescriptor(ctx, obj, types.OvfCreateDescriptorParams{
		Name:              base,
		OvfFiles:          files,
		IncludeImageFiles: types.NewBool(false),
		ExportOption:      []string{"mac"}, // the NICs' addresses, which a move keeps
	})
	switch {
	case err == nil && len(res.Error) > 0:
		err = fmt.Errorf("%s", res.Error[0].LocalizedMessage)
	case err == nil:
		desc := []byte(res.OvfDescriptor)
		why := checkDescriptor(desc, g, len(files))
		if why == nil {
			return desc, nil
		}
		slog.Warn("vsphere: the host's OVF descriptor does not state the VM: polyvisor writes its own", "host", h.name, "guest", g.Name, "why", why)
	case !notImplemented(err):
		return nil, h.wrap(ctx, what, err)
	}
	if len(files) != 1 {
		return nil, fmt.Errorf("vsphere %s: %s: %w: the host wrote none that states the VM (%v), and polyvisor writes one for a single-disk VM only", h.name, what, vendorhost.ErrNotSupported, err)
	}
	return ownDescriptor(g, files[0])
}

// ownDescriptor is polyvisor's OVF descriptor of a single-disk VM.
func ownDescriptor(g vendorhost.Guest, disk types.OvfFile) ([]byte, error) {
	spec := ovf.ExportSpec{
		Name: g.Name, CPUs: g.CPUs, Memory: g.MemoryMiB << 20, Firmware: g.Firmware, OSType: g.OS,
		Disk: ovf.ExportDisk{Href: disk.Path, FileSize: disk.Size, Capacity: g.Disks[0].Capacity},
	}
	for _, n := range g.NICs {
		spec.NICs = append(spec.NICs, vmdef.NIC{MAC: n.MAC, Network: n.Network, Model: n.Model})
	}
	return ovf.Write(spec)
}

// checkDescriptor says how a descriptor misstates g, nil when it states
// g's CPUs, memory, firmware, disks and NICs with their MACs, as
// polyvisor's importer reads it.
func checkDescriptor(desc []byte, g vendorhost.Guest, disks int) error {
	d, err := ovf.Parse(desc)
	if err != nil {
		return err
	}
	m := d.Machine
	fw := m.Firmware
	if fw == "" {
		fw = vmdef.FirmwareBIOS
	}
	switch {
	case m.CPUs != g.CPUs:
		return fmt.Errorf("it states %d CPUs, the VM has %d", m.CPUs, g.CPUs)
	case m.Memory != g.MemoryMiB<<20:
		return fmt.Errorf("it states %d bytes of memory, the VM has %d MiB", m.Memory, g.MemoryMiB)
	case fw != g.Firmware:
		return fmt.Errorf("it states firmware %s, the VM has %s", fw, g.Firmware)
	case len(m.Disks) != disks:
		return fmt.Errorf("it states %d disks, %d were exported", len(m.Disks), disks)
	case len(m.NICs) != len(g.NICs):
		return fmt.Errorf("it states %d NICs, the VM has %d", len(m.NICs), len(g.NICs))
	}
	for i, n := range m.NICs {
		if !strings.EqualFold(n.MAC, g.NICs[i].MAC) {
			return fmt.Errorf("NIC %d: it states MAC %q, the VM has %s", i+1, n.MAC, g.NICs[i].MAC)
		}
	}
	return nil
}

// writeOVA packs the export into path through a temporary file renamed
// when whole, so path never holds half an OVA.
func writeOVA(ctx context.Context, path, ovfName string, desc []byte, members []ovf.Member, progress vendorhost.Progress) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var total int64
	for _, m := range members {
		if info, err := os.Stat(m.Path); err == nil {
			total += info.Size()
		}
	}
	progress("packing the OVA", 0, total)
	if err := ovf.WriteOVA(ctx, f, ovfName, desc, members, func(done int64) { progress("packing the OVA", done, total) }); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// fileBase makes a VM's name (which vSphere lets hold any character) a
// plain file name.
func fileBase(name string) string {
	b := []byte(name)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '-'
		}
	}
	s := strings.Trim(string(b), ".-")
	if s == "" {
		s = "vm"
	}
	return s[:min(len(s), 200)]
}
