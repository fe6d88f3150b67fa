package exporter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/diskimage"
	"github.com/polyvisor/polyvisor/internal/ovf"
	"github.com/polyvisor/polyvisor/internal/vmdef"
)

// Appliance is what an OVA of a VM describes.
type Appliance struct {
	Name     string
	CPUs     int
	Memory   int64  // bytes
	Firmware string // bios or uefi
	Disk     string // the guest's qcow2 root disk
	NICs     []NIC
}

// NIC is one network interface of an Appliance.
type NIC struct {
	MAC     string
	Network string
}

// OVA writes an OVF 1.0 appliance: the descriptor, a manifest of SHA-256
// digests, and the disk as a streamOptimized VMDK, the form every OVF
// importer takes.
func OVA(ctx context.Context, a Appliance, dst string, progress Progress) error {
	work, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".work-")
	if err != nil {
		return fmt.Errorf("export to %s: %w", dst, err)
	}
	defer os.RemoveAll(work)
	diskName := a.Name + "-disk1.vmdk"
	vmdk := filepath.Join(work, diskName)
	if err := convert(ctx, a.Disk, vmdk, "vmdk", []string{"-o", "subformat=streamOptimized,adapter_type=lsilogic"}, progress); err != nil {
		return err
	}
	info, err := diskimage.Inspect(ctx, vmdk, "vmdk")
	if err != nil {
		return err
	}
	st, err := os.Stat(vmdk)
	if err != nil {
		return err
	}
	spec := ovf.ExportSpec{
		Name: a.Name, CPUs: a.CPUs, Memory: a.Memory, Firmware: a.Firmware,
		Disk: ovf.ExportDisk{Href: diskName, FileSize: st.Size(), Capacity: info.VirtualSize},
	}
	for _, n := range a.NICs {
		spec.NICs = append(spec.NICs, vmdef.NIC{MAC: n.MAC, Network: n.Network})
	}
	descriptor, err := ovf.Write(spec)
	if err != nil {
		return err
	}
	return writeAtomically(dst, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		total := st.Size()
		err = ovf.WriteOVA(ctx, f, a.Name+".ovf", descriptor, []ovf.Member{{Name: diskName, Path: vmdk}}, func(done int64) {
			progress("writing the appliance", done, total)
		})
		if err != nil {
			return err
		}
		return f.Close()
	})
}
