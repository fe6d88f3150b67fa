package importer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

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

// diskFiles returns the files qemu-img will read of src: the image, and a
// text VMDK descriptor's extents, each a regular file beside it.
func diskFiles(src diskSource) ([]string, error) {
	if src.Format.QEMUFormat() == "" {
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
	return files, nil
}

// checkSelfContained makes sure, by qemu-img's own reading of src, that
// qemu-img will read nothing but the image itself and its extents.
func checkSelfContained(ctx context.Context, src diskSource) error {
	info, err := diskimage.Inspect(ctx, src.Path, src.Format.QEMUFormat())
	if err != nil {
		return err
	}
	return diskimage.CheckSelfContained(src.Path, info)
}

// dataFile is the qcow2 base of the template's data disk i (0-based).
func dataFile(i int) string { return "data" + strconv.Itoa(i+1) + ".qcow2" }

// importDisk converts a disk image, and a definition's data disks, into a
// VM template's qcow2 bases; m says how it boots and is returned with the
// result.
func (im Importer) importDisk(ctx context.Context, req Request, src diskSource, data []diskSource, m vmdef.Machine, progress Progress) (*Result, error) {
	name, err := templateName(req, m.Name)
	if err != nil {
		return nil, err
	}
	sources := append([]diskSource{src}, data...)
	var files []string
	for _, s := range sources {
		f, err := diskFiles(s)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", req.Path, err)
		}
		files = append(files, f...)
	}
	// The template's digest is of the files imported, read while qemu-img
	// inspects and then converts them (from the page cache, on the other
	// core): hashing the new base afterwards read a GiB more. The hash
	// reads only the files above, regular files the user handed over, so
	// it need not wait for qemu-img's verdict on what else the image names.
	hashCtx, stopHash := context.WithCancel(ctx)
	digest := make(chan digestResult, 1)
	go func() { digest <- filesDigest(hashCtx, files) }()
	defer func() {
		stopHash()
		if digest != nil { // nil once the conversion received it
			<-digest
		}
	}()
	for _, s := range sources {
		if err := checkSelfContained(ctx, s); err != nil {
			return nil, fmt.Errorf("import %s: %w", req.Path, err)
		}
	}
	t := &api.Template{
		ID: template.Key(name, template.TypeVM, importedArch), Name: name, Type: template.TypeVM,
		Source: "import", Arch: importedArch, Boot: bootOf(m),
		Origin: string(src.Format) + " " + req.Path,
	}
	for i := range data {
		t.Boot.DataDisks = append(t.Boot.DataDisks, dataFile(i))
	}
	err = im.add(t, req, func(staging string) error {
		targets := append([]string{diskFile}, t.Boot.DataDisks...)
		var size int64
		for i, s := range sources {
			phase := "converting " + filepath.Base(s.Path) + " to qcow2"
			if len(sources) > 1 {
				phase = fmt.Sprintf("converting disk %d of %d, %s, to qcow2", i+1, len(sources), filepath.Base(s.Path))
			}
			progress(phase, 0, 10000)
			disk := filepath.Join(staging, targets[i])
			err := diskimage.Convert(ctx, s.Path, s.Format.QEMUFormat(), disk, "qcow2", nil, func(done, total int64) {
				progress(phase, done, total)
			})
			if err != nil {
				return err
			}
			info, err := os.Stat(disk)
			if err != nil {
				return err
			}
			size += info.Size()
		}
		sum := <-digest
		digest = nil
		if sum.err != nil {
			return sum.err
		}
		t.Digest, t.Size = sum.digest, size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	return &Result{Template: t, Machine: m}, nil
}
