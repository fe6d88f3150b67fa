package importer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/diskimage"
	"github.com/polyvisor/polyvisor/internal/imageformat"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// diskSource is a disk image to import, its format known by content.
type diskSource struct {
	Path   string
	Format imageformat.Format
}

// Imported disks boot by their own firmware on a PC, like the firmware
// templates polyvisor builds.
const (
	diskFile     = "disk.qcow2"
	importedArch = "amd64"
)

// bootOf is how a template imported for machine boots.
func bootOf(m vmdef.Machine) *api.TemplateBoot {
	fw := m.Firmware
	if fw == "" {
		fw = vmdef.FirmwareBIOS
	}
	return &api.TemplateBoot{
		Disk: diskFile, Machine: "q35", Console: "ttyS0", QEMU: "qemu-system-x86_64",
		Firmware: fw, NoAgent: true,
	}
}

// checkDisk makes sure qemu-img will read nothing but the image itself.
func checkDisk(ctx context.Context, src diskSource) error {
	qemuFormat := src.Format.QEMUFormat()
	if qemuFormat == "" {
		return fmt.Errorf("%w: %s is %s, not a disk image", api.ErrInvalid, filepath.Base(src.Path), src.Format)
	}
	if src.Format == imageformat.VMDKText {
		f, err := os.Open(src.Path)
		if err != nil {
			return err
		}
		extents, err := diskimage.DescriptorExtents(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(src.Path), err)
		}
		for _, e := range extents {
			if info, err := os.Lstat(filepath.Join(filepath.Dir(src.Path), e)); err != nil || !info.Mode().IsRegular() {
				return fmt.Errorf("%w: %s: extent %s is not a regular file beside it", api.ErrInvalid, filepath.Base(src.Path), e)
			}
		}
	}
	info, err := diskimage.Inspect(ctx, src.Path, qemuFormat)
	if err != nil {
		return err
	}
	return diskimage.CheckSelfContained(src.Path, info)
}

// importDisk converts a disk image into a VM template's qcow2 base; m
// says how it boots and is returned with the result.
func (im Importer) importDisk(ctx context.Context, req Request, src diskSource, m vmdef.Machine, progress Progress) (*Result, error) {
	name, err := templateName(req, m.Name)
	if err != nil {
		return nil, err
	}
	if err := checkDisk(ctx, src); err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	t := &api.Template{
		ID: template.Key(name, template.TypeVM, importedArch), Name: name, Type: template.TypeVM,
		Source: "import", Arch: importedArch, Boot: bootOf(m),
		Origin: string(src.Format) + " " + req.Path,
	}
	err = im.add(t, req, func(staging string) error {
		progress("converting "+filepath.Base(src.Path)+" to qcow2", 0, 10000)
		err := diskimage.Convert(ctx, src.Path, src.Format.QEMUFormat(), filepath.Join(staging, diskFile), "qcow2", nil, func(done, total int64) {
			progress("converting "+filepath.Base(src.Path)+" to qcow2", done, total)
		})
		if err != nil {
			return err
		}
		progress("computing digest", 0, 0)
		return template.DescribeVMFiles(staging, t)
	})
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	return &Result{Template: t, Machine: m}, nil
}
