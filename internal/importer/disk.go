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

// checkDisk makes sure qemu-img will read nothing but the image itself,
// and returns the files it will read: the image, and a text VMDK
// descriptor's extents beside it.
func checkDisk(ctx context.Context, src diskSource) ([]string, error) {
	qemuFormat := src.Format.QEMUFormat()
	if qemuFormat == "" {
		return nil, fmt.Errorf("%w: %s is %s, not a disk image", api.ErrInvalid, filepath.Base(src.Path), src.Format)
	}
	files := []string{src.Path}
	if src.Format == imageformat.VMDKText {
		f, err := os.Open(src.Path)
		if err != nil {
			return nil, err
		}
		extents, err := diskimage.DescriptorExtents(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(src.Path), err)
		}
		for _, e := range extents {
			path := filepath.Join(filepath.Dir(src.Path), e)
			if info, err := os.Lstat(path); err != nil || !info.Mode().IsRegular() {
				return nil, fmt.Errorf("%w: %s: extent %s is not a regular file beside it", api.ErrInvalid, filepath.Base(src.Path), e)
			}
			files = append(files, path)
		}
	}
	info, err := diskimage.Inspect(ctx, src.Path, qemuFormat)
	if err != nil {
		return nil, err
	}
	return files, diskimage.CheckSelfContained(src.Path, info)
}

// importDisk converts a disk image into a VM template's qcow2 base; m
// says how it boots and is returned with the result.
func (im Importer) importDisk(ctx context.Context, req Request, src diskSource, m vmdef.Machine, progress Progress) (*Result, error) {
	name, err := templateName(req, m.Name)
	if err != nil {
		return nil, err
	}
	files, err := checkDisk(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	t := &api.Template{
		ID: template.Key(name, template.TypeVM, importedArch), Name: name, Type: template.TypeVM,
		Source: "import", Arch: importedArch, Boot: bootOf(m),
		Origin: string(src.Format) + " " + req.Path,
	}
	err = im.add(t, req, func(staging string) error {
		phase := "converting " + filepath.Base(src.Path) + " to qcow2"
		progress(phase, 0, 10000)
		disk := filepath.Join(staging, diskFile)
		// The template's digest is of the files imported, read while
		// qemu-img reads them (from the page cache, on the other core):
		// hashing the new base after the conversion read a GiB more.
		hashCtx, stopHash := context.WithCancel(ctx)
		defer stopHash()
		digest := make(chan digestResult, 1)
		go func() { digest <- filesDigest(hashCtx, files) }()
		err := diskimage.Convert(ctx, src.Path, src.Format.QEMUFormat(), disk, "qcow2", nil, func(done, total int64) {
			progress(phase, done, total)
		})
		if err != nil {
			stopHash()
			<-digest
			return err
		}
		sum := <-digest
		if sum.err != nil {
			return sum.err
		}
		info, err := os.Stat(disk)
		if err != nil {
			return err
		}
		t.Digest, t.Size = sum.digest, info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	return &Result{Template: t, Machine: m}, nil
}
