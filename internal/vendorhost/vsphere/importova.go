package vsphere

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	govovf "github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// maxDescriptor bounds the .ovf read from an OVA.
const maxDescriptor = 4 << 20

// ImportOVA deploys the OVA at path as a new VM named name: the host
// reads its descriptor (CreateImportSpec), makes the VM in the
// datacenter's first resource pool on its datastore with the most free
// space, and takes its disks through an NFC lease. A failure leaves no
// VM behind.
func (h *host) ImportOVA(ctx context.Context, path, name string, progress vendorhost.Progress) (err error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	what := "import " + filepath.Base(path) + " as " + name
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("vsphere %s: %s: %w: give the new VM a name", h.name, what, vendorhost.ErrInvalid)
	}
	desc, sizes, err := readOVA(path)
	if err != nil {
		return fmt.Errorf("vsphere %s: %s: %w: %v", h.name, what, vendorhost.ErrInvalid, err)
	}
	all, err := h.vms(ctx, []string{"name", "config.template"})
	if err != nil {
		return err
	}
	if slices.ContainsFunc(all, func(vm mo.VirtualMachine) bool { return vm.Name == name }) {
		return fmt.Errorf("vsphere %s: %s: %w: a VM of that name exists", h.name, what, vendorhost.ErrConflict)
	}
	pool, ds, folder, err := h.placement(ctx)
	if err != nil {
		return h.wrap(ctx, what, err)
	}
	spec, err := govovf.NewManager(h.vc).CreateImportSpec(ctx, string(desc), pool, ds, &types.OvfCreateImportSpecParams{
		EntityName:             name,
		OvfManagerCommonParams: types.OvfManagerCommonParams{Locale: "US"},
	})
	if err != nil {
		return h.wrap(ctx, what, err)
	}
	if len(spec.Error) > 0 {
		return fmt.Errorf("vsphere %s: %s: %w: the host refuses the descriptor: %s", h.name, what, vendorhost.ErrInvalid, spec.Error[0].LocalizedMessage)
	}
	for _, w := range spec.Warning {
		slog.Warn("vsphere: import", "host", h.name, "ova", path, "warning", w.LocalizedMessage)
	}
	lease, err := pool.ImportVApp(ctx, spec.ImportSpec, folder, nil)
	if err != nil {
		return h.wrap(ctx, what, err)
	}
	var entity *types.ManagedObjectReference
	defer func() {
		if err != nil {
			h.abortLease(ctx, lease)
			h.removeHalfImported(ctx, entity)
		}
	}()
	if err := h.waitLease(ctx, lease); err != nil {
		return h.wrap(ctx, what, err)
	}
	info, err := lease.Wait(ctx, spec.FileItem)
	if err != nil {
		return h.wrap(ctx, what, err)
	}
	entity = &info.Entity
	var total int64
	for _, item := range info.Items {
		total += sizes[item.Path]
	}
	t := h.newTransfer(ctx, lease, "uploading "+filepath.Base(path), total, progress)
	defer t.close()
	for _, item := range info.Items {
		if err := uploadMember(t, path, item); err != nil {
			return h.wrap(ctx, what+": upload "+item.Path, err)
		}
	}
	return h.wrap(ctx, what, lease.Complete(ctx))
}

// readOVA returns an OVA's descriptor, its first member, and the sizes
// of its members by name.
func readOVA(path string) ([]byte, map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var desc []byte
	sizes := map[string]int64{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s is not a whole OVA (tar) archive: %w", path, err)
		}
		if desc == nil {
			if !strings.EqualFold(filepath.Ext(hdr.Name), ".ovf") || hdr.Size > maxDescriptor {
				return nil, nil, fmt.Errorf("%s: the first member is %q; an OVA starts with its .ovf descriptor", path, hdr.Name)
			}
			if desc, err = io.ReadAll(tr); err != nil {
				return nil, nil, err
			}
		}
		sizes[hdr.Name] = hdr.Size
	}
	if desc == nil {
		return nil, nil, fmt.Errorf("%s is empty", path)
	}
	return desc, sizes, nil
}

// uploadMember sends the OVA member item names through the lease.
func uploadMember(t *transfer, path string, item nfc.FileItem) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the OVA has no member %q that its descriptor references", item.Path)
		}
		if err != nil {
			return err
		}
		if hdr.Name == item.Path {
			return t.upload(item, tr, hdr.Size)
		}
	}
}

// placement picks where an imported VM goes: the datacenter's first
// resource pool (by inventory path), the datastore of its compute
// resource with the most free space, and the datacenter's VM folder.
func (h *host) placement(ctx context.Context) (*object.ResourcePool, *object.Datastore, *object.Folder, error) {
	pools, err := h.find.ResourcePoolList(ctx, "*/Resources")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("find a resource pool: %w", err)
	}
	slices.SortFunc(pools, func(a, b *object.ResourcePool) int { return strings.Compare(a.InventoryPath, b.InventoryPath) })
	pool := pools[0]
	var rp mo.ResourcePool
	pc := property.DefaultCollector(h.vc)
	if err := pc.RetrieveOne(ctx, pool.Reference(), []string{"owner"}, &rp); err != nil {
		return nil, nil, nil, err
	}
	var cr mo.ComputeResource
	if err := pc.RetrieveOne(ctx, rp.Owner, []string{"datastore"}, &cr); err != nil {
		return nil, nil, nil, err
	}
	if len(cr.Datastore) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: %s has no datastore", vendorhost.ErrNotFound, pool.InventoryPath)
	}
	var stores []mo.Datastore
	if err := pc.Retrieve(ctx, cr.Datastore, []string{"summary"}, &stores); err != nil {
		return nil, nil, nil, err
	}
	best := -1
	for i, s := range stores {
		if s.Summary.Accessible && (best < 0 || s.Summary.FreeSpace > stores[best].Summary.FreeSpace) {
			best = i
		}
	}
	if best < 0 {
		return nil, nil, nil, fmt.Errorf("%w: no datastore of %s is accessible", vendorhost.ErrNotFound, pool.InventoryPath)
	}
	folders, err := h.dc.Folders(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return pool, object.NewDatastore(h.vc, stores[best].Self), folders.VmFolder, nil
}

// removeHalfImported destroys the VM a failed import made, where the
// host did not on the lease's abort.
func (h *host) removeHalfImported(ctx context.Context, ref *types.ManagedObjectReference) {
	if ref == nil || ref.Value == "" {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	vm := object.NewVirtualMachine(h.vc, *ref)
	var mvm mo.VirtualMachine
	if err := vm.Properties(rctx, *ref, []string{"name"}, &mvm); err != nil {
		return // gone already, or the host is
	}
	t, err := vm.Destroy(rctx)
	if err == nil {
		err = h.waitTask(rctx, t)
	}
	if err != nil {
		slog.Warn("vsphere: could not remove a half-imported VM: delete it in the vSphere client", "host", h.name, "vm", mvm.Name, "err", err)
	}
}
