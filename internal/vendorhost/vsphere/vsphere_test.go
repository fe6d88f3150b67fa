package vsphere

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/importer"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

const vm0 = "DC0_H0_VM0"

// TestVSphereManagesAndExportsAVM drives a vcsim vCenter through Open:
// list, power, snapshots, resources, export to an OVA that polyvisor's
// importer turns into a template with the VM's CPUs, memory, firmware,
// NICs and MACs, the OVA imported back into vSphere, delete.
func TestVSphereManagesAndExportsAVM(t *testing.T) {
	s := startSim(t)
	h := s.open(t, s.creds)
	ctx := context.Background()

	guests, err := h.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range guests {
		names = append(names, g.Name)
	}
	if want := []string{"DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1", vm0, "DC0_H0_VM1"}; !slices.Equal(names, want) {
		t.Fatalf("List: %v, want %v", names, want)
	}
	g, err := h.Get(ctx, vm0)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != vendorhost.StateRunning || g.CPUs != 1 || g.MemoryMiB != 32 || g.Firmware != "bios" || g.OS == "" ||
		len(g.Disks) != 1 || !strings.HasPrefix(g.Disks[0].Path, "[LocalDS_0] ") || g.Disks[0].Capacity <= 0 ||
		len(g.NICs) != 1 || g.NICs[0].MAC == "" || g.NICs[0].Model != "e1000" || g.NICs[0].Network != "DC0_DVPG0" {
		t.Fatalf("Get: %+v", g)
	}
	if _, err := h.Get(ctx, "no-such-vm"); !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("Get of a missing VM: %v", err)
	}

	// Power: a guest shutdown first, then a forced one.
	if err := h.Stop(ctx, vm0, 30*time.Second, false); err != nil {
		t.Fatal(err)
	}
	wantState(t, h, vm0, vendorhost.StateStopped)
	if err := h.Stop(ctx, vm0, time.Second, false); !errors.Is(err, vendorhost.ErrConflict) {
		t.Errorf("Stop of a stopped VM: %v", err)
	}
	if err := h.Start(ctx, vm0); err != nil {
		t.Fatal(err)
	}
	wantState(t, h, vm0, vendorhost.StateRunning)
	if err := h.Restart(ctx, vm0); err != nil {
		t.Fatal(err)
	}
	wantState(t, h, vm0, vendorhost.StateRunning)
	// A running VM without memory hot-add is not resized.
	if err := h.SetResources(ctx, vm0, 0, 64); !errors.Is(err, vendorhost.ErrConflict) || !strings.Contains(err.Error(), "stop it") {
		t.Errorf("SetResources on a running VM: %v", err)
	}
	if err := h.Delete(ctx, vm0); !errors.Is(err, vendorhost.ErrConflict) {
		t.Errorf("Delete of a running VM: %v", err)
	}
	if err := h.Stop(ctx, vm0, 0, true); err != nil {
		t.Fatal(err)
	}
	wantState(t, h, vm0, vendorhost.StateStopped)

	// Snapshots: a flat list naming parents, by name.
	for _, snap := range []string{"base", "second"} {
		if err := h.CreateSnapshot(ctx, vm0, snap); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.CreateSnapshot(ctx, vm0, "base"); !errors.Is(err, vendorhost.ErrConflict) {
		t.Errorf("a second snapshot named base: %v", err)
	}
	wantSnapshots(t, h, vm0, "base<>", "second<base>*")
	if err := h.RevertSnapshot(ctx, vm0, "base"); err != nil {
		t.Fatal(err)
	}
	wantSnapshots(t, h, vm0, "base<>*", "second<base>")
	if err := h.DeleteSnapshot(ctx, vm0, "second"); err != nil {
		t.Fatal(err)
	}
	wantSnapshots(t, h, vm0, "base<>*")
	for _, err := range []error{h.RevertSnapshot(ctx, vm0, "nope"), h.DeleteSnapshot(ctx, vm0, "nope")} {
		if !errors.Is(err, vendorhost.ErrNotFound) {
			t.Errorf("a missing snapshot: %v", err)
		}
	}

	// Resources of a stopped VM; the test gives it UEFI and a second
	// NIC with a MAC of its own, as a vSphere client would.
	if err := h.SetResources(ctx, vm0, 2, 64); err != nil {
		t.Fatal(err)
	}
	if err := h.SetResources(ctx, vm0, 0, 66); !errors.Is(err, vendorhost.ErrInvalid) {
		t.Errorf("memory not a multiple of 4 MiB: %v", err)
	}
	const mac2 = "00:50:56:3f:00:02"
	nic := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
		VirtualDevice: types.VirtualDevice{Key: -1, Backing: &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
		}},
		AddressType: string(types.VirtualEthernetCardMacTypeManual), MacAddress: mac2,
	}}}
	reconfigure(t, h, vm0, types.VirtualMachineConfigSpec{
		Firmware:     string(types.GuestOsDescriptorFirmwareTypeEfi),
		DeviceChange: []types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: nic}},
	})
	g, err = h.Get(ctx, vm0)
	if err != nil {
		t.Fatal(err)
	}
	if g.CPUs != 2 || g.MemoryMiB != 64 || g.Firmware != "uefi" || len(g.NICs) != 2 || g.NICs[1].MAC != mac2 || g.NICs[1].Model != "vmxnet3" {
		t.Fatalf("after the changes: %+v", g)
	}

	// Export, and import into a polyvisor template store.
	s.putDisk(t, g.Disks[0].Path, 4<<20)
	dir := t.TempDir()
	var phases []string
	exp, err := h.Export(ctx, vm0, dir, func(phase string, done, total int64) {
		if len(phases) == 0 || phases[len(phases)-1] != phase {
			phases = append(phases, phase)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 || exp.Path != dir+"/"+vm0+".ova" {
		t.Errorf("export wrote %v, returned %s", left, exp.Path)
	}
	if len(phases) < 2 {
		t.Errorf("export progress phases %q", phases)
	}
	wantSnapshots(t, h, vm0, "base<>*") // the export's own snapshot is gone
	store := template.Store{Dir: t.TempDir()}
	res, err := importer.Importer{Templates: store}.Import(ctx, importer.Request{Path: exp.Path, Name: "moved"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Machine
	if m.CPUs != 2 || m.Memory != 64<<20 || m.Firmware != "uefi" || len(m.NICs) != 2 {
		t.Fatalf("imported machine: %+v", m)
	}
	for i, n := range m.NICs {
		if n.MAC != g.NICs[i].MAC {
			t.Errorf("NIC %d: MAC %s, the VM's is %s", i+1, n.MAC, g.NICs[i].MAC)
		}
	}
	if res.Template == nil || res.Template.Boot == nil || res.Template.Boot.Firmware != "uefi" {
		t.Errorf("template: %+v", res.Template)
	}

	// The OVA back into vSphere, as a new VM.
	if err := h.ImportOVA(ctx, exp.Path, "imported", nil); err != nil {
		t.Fatal(err)
	}
	back, err := h.Get(ctx, "imported")
	if err != nil {
		t.Fatal(err)
	}
	if back.CPUs != 2 || back.MemoryMiB != 64 || len(back.NICs) != 2 || len(back.Disks) != 1 {
		t.Errorf("imported into vSphere: %+v", back)
	}
	if err := h.ImportOVA(ctx, exp.Path, "imported", nil); !errors.Is(err, vendorhost.ErrConflict) {
		t.Errorf("an import over an existing VM: %v", err)
	}
	// An OVA that lost its disk fails during the upload, and the VM the
	// host made for it is removed.
	diskless := filepath.Join(t.TempDir(), "diskless.ova")
	copyOVA(t, exp.Path, diskless, func(name string) bool { return !strings.HasSuffix(name, ".vmdk") })
	err = h.ImportOVA(ctx, diskless, "half", nil)
	oneLine(t, err)
	if _, gerr := h.Get(ctx, "half"); !errors.Is(gerr, vendorhost.ErrNotFound) {
		t.Errorf("a failed import (%v) left its VM: %v", err, gerr)
	}
	if err := h.ImportOVA(ctx, filepath.Join(dir, "missing.ova"), "none", nil); !errors.Is(err, vendorhost.ErrInvalid) {
		t.Errorf("import of a missing file: %v", err)
	}

	if _, err := h.Console(ctx, vm0); !errors.Is(err, vendorhost.ErrNotSupported) || !strings.Contains(err.Error(), "vSphere Client") {
		t.Errorf("Console: %v", err)
	}
	if err := h.Delete(ctx, vm0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Get(ctx, vm0); !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
}

func wantState(t *testing.T, h *host, name, state string) {
	t.Helper()
	g, err := h.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != state {
		t.Fatalf("%s is %s, want %s", name, g.State, state)
	}
}

// wantSnapshots compares a VM's snapshots, each as NAME<PARENT> with a
// * when current.
func wantSnapshots(t *testing.T, h *host, name string, want ...string) {
	t.Helper()
	snaps, err := h.Snapshots(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range snaps {
		e := s.Name + "<" + s.Parent + ">"
		if s.Current {
			e += "*"
		}
		got = append(got, e)
	}
	if !slices.Equal(got, want) {
		t.Errorf("snapshots %q, want %q", got, want)
	}
}

// copyOVA copies the members of an OVA that keep says to keep.
func copyOVA(t *testing.T, src, dst string, keep func(name string) bool) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !keep(hdr.Name) {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
