package importer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/imageformat"
	"github.com/polyvisor/polyvisor/internal/ovf"
	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// parsers read each definition format into a Machine.
var parsers = map[imageformat.Format]func([]byte) (*vmdef.Machine, error){
	imageformat.VMX:        vmdef.ParseVMX,
	imageformat.VBox:       vmdef.ParseVBox,
	imageformat.LibvirtXML: vmdef.ParseLibvirt,
	imageformat.XLConfig:   vmdef.ParseXL,
}

// importDefinition imports the boot disk a guest definition names, with
// the machine it describes.
func (im Importer) importDefinition(ctx context.Context, req Request, format imageformat.Format, progress Progress) (*Result, error) {
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	data, err := vmdef.ReadLimited(f, vmdef.MaxXMLSize, filepath.Base(req.Path))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrInvalid, req.Path, err)
	}
	var m *vmdef.Machine
	if format == imageformat.OVF {
		// Its files lie beside it; the manifest, if any, must match them.
		var d *ovf.Descriptor
		if d, err = ovf.VerifyDir(ctx, req.Path, data); err == nil {
			m = &d.Machine
		}
	} else if m, err = parsers[format](data); err != nil {
		err = fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	return im.importMachine(ctx, req, filepath.Dir(req.Path), m, progress)
}

// importMachine imports m's boot disk, whose path is relative to dir
// unless absolute, warning about every other disk.
func (im Importer) importMachine(ctx context.Context, req Request, dir string, m *vmdef.Machine, progress Progress) (*Result, error) {
	if len(m.Disks) == 0 {
		return nil, fmt.Errorf("%w: import %s: it defines no hard disk to import", api.ErrInvalid, req.Path)
	}
	for _, d := range m.Disks[1:] {
		m.Warnf("disk %s not imported: polyvisor guests have one disk for now; import it separately with 'polyvisor import'", d.Path)
	}
	if m.Arch != "" && m.Arch != "x86_64" {
		return nil, fmt.Errorf("%w: import %s: the guest is %s; imported disks boot on x86_64 (q35) only", api.ErrInvalid, req.Path, m.Arch)
	}
	if req.Firmware != "" && m.Firmware != "" && req.Firmware != m.Firmware {
		m.Warnf("firmware: the definition says %s; booting with %s as --firmware asks", m.Firmware, req.Firmware)
	}
	if req.Firmware != "" {
		m.Firmware = req.Firmware
	}
	if m.OSFamily == vmdef.OSWindows {
		m.Warnf("guest OS %s: polyvisor gives guests virtio disks and NICs; Windows needs the virtio drivers installed to boot from them", m.OS)
	}
	path := m.Disks[0].Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	src, err := diskAt(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: boot disk: %w", req.Path, err)
	}
	if declared := m.Disks[0].Format; declared != "" && declared != src.Format.QEMUFormat() && !(declared == "vhd" && src.Format.QEMUFormat() == "vpc") {
		m.Warnf("disk %s: the definition says %s, its content is %s; read as %s", m.Disks[0].Path, declared, src.Format, src.Format)
	}
	return im.importDisk(ctx, req, src, *m, progress)
}

// diskAt checks that path is a regular file holding a disk image, and
// says which, by content.
func diskAt(path string) (diskSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return diskSource{}, fmt.Errorf("%w: %v", api.ErrNotFound, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return diskSource{}, err
	}
	if !info.Mode().IsRegular() {
		return diskSource{}, fmt.Errorf("%w: %s is not a regular file (a host device is never imported)", api.ErrInvalid, path)
	}
	format, err := imageformat.Detect(f, info.Size())
	if err != nil {
		return diskSource{}, fmt.Errorf("%w: %s: %v", api.ErrInvalid, path, err)
	}
	if format.QEMUFormat() == "" {
		return diskSource{}, fmt.Errorf("%w: %s is %s, not a disk image", api.ErrInvalid, path, format)
	}
	return diskSource{Path: path, Format: format}, nil
}

// importOVA extracts an OVA into a work directory, checking its manifest,
// and imports the boot disk its descriptor names.
func (im Importer) importOVA(ctx context.Context, req Request, progress Progress) (*Result, error) {
	if err := os.MkdirAll(im.Templates.Dir, 0o700); err != nil {
		return nil, err
	}
	// Under the template store, so that a crash leaves it to Sweep.
	work, err := os.MkdirTemp(im.Templates.Dir, ".build-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	progress("unpacking the appliance", 0, info.Size())
	d, err := ovf.ExtractOVA(ctx, f, work, func(done int64) { progress("unpacking the appliance", done, info.Size()) })
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	return im.importMachine(ctx, req, work, &d.Machine, progress)
}
