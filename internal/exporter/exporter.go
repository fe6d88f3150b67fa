// Package exporter writes polyvisor guests out in other products'
// formats: a VM's disk as qcow2, VMDK or VHDX (qemu-img), a VM as an OVF
// 1.0 appliance (OVA), a container's root tree as a tarball. Every file is
// written under a temporary name beside its destination and renamed into
// place when complete, never over an existing file.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/diskimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Formats a guest exports to.
const (
	FormatOVA   = "ova"
	FormatQCOW2 = "qcow2"
	FormatVMDK  = "vmdk"
	FormatVHDX  = "vhdx"
	FormatTar   = "tar"
)

// VMFormats and ContainerFormats are what each class exports to.
var (
	VMFormats        = []string{FormatOVA, FormatQCOW2, FormatVMDK, FormatVHDX}
	ContainerFormats = []string{FormatTar}
)

// Progress reports an export's phase and how far it got.
type Progress func(phase string, done, total int64)

// CheckDestination refuses a destination that is relative, exists, or
// lies in a directory that does not.
func CheckDestination(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: path %q: give an absolute path", api.ErrInvalid, path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%w: path %s: it exists; remove it or choose another name", api.ErrExists, path)
	}
	if info, err := os.Stat(filepath.Dir(path)); err != nil || !info.IsDir() {
		return fmt.Errorf("%w: path %s: directory %s does not exist", api.ErrInvalid, path, filepath.Dir(path))
	}
	return nil
}

// writeAtomically runs write on a temporary path beside dst, then renames
// it to dst, refusing to replace a file that appeared meanwhile. A failure
// removes the temporary file.
func writeAtomically(dst string, write func(tmp string) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-")
	if err != nil {
		return fmt.Errorf("export to %s: %w", dst, err)
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// qemu-img and the writers create the file themselves.
	if err = os.Remove(tmp); err != nil {
		return err
	}
	if err = write(tmp); err != nil {
		return err
	}
	if err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w: path %s: it appeared while exporting; remove it or choose another name", api.ErrExists, dst)
		}
		return fmt.Errorf("export to %s: %w", dst, err)
	}
	return nil
}

// diskOptions are the qemu-img -o options of each disk format: VMDK as
// one growable file, the form VMware Workstation and VirtualBox attach;
// VHDX dynamic, as Hyper-V makes them.
var diskOptions = map[string][]string{
	FormatQCOW2: nil,
	FormatVMDK:  {"-o", "subformat=monolithicSparse,adapter_type=lsilogic"},
	FormatVHDX:  {"-o", "subformat=dynamic"},
}

// Disk writes the qcow2 image src (its backing chain flattened) to dst in
// format.
func Disk(ctx context.Context, src, dst, format string, progress Progress) error {
	opts, ok := diskOptions[format]
	if !ok {
		return fmt.Errorf("%w: format %q: a disk exports as qcow2, vmdk or vhdx", api.ErrInvalid, format)
	}
	return writeAtomically(dst, func(tmp string) error {
		return convert(ctx, src, tmp, format, opts, progress)
	})
}

// convert runs qemu-img convert reporting progress.
func convert(ctx context.Context, src, dst, format string, opts []string, progress Progress) error {
	phase := "converting to " + format
	progress(phase, 0, 10000)
	return diskimage.Convert(ctx, src, "qcow2", dst, format, opts, func(done, total int64) { progress(phase, done, total) })
}
