package importer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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

// importDefinition imports the disks a guest definition names, with the
// machine it describes.
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

// importMachine imports m's boot disk and its other image-file disks, as
// data disks, whose paths are relative to dir unless absolute. A failure
// returns the warnings found so far with it.
func (im Importer) importMachine(ctx context.Context, req Request, dir string, m *vmdef.Machine, progress Progress) (*Result, error) {
	res, err := im.importBootDisk(ctx, req, dir, m, progress)
	if err != nil {
		return &Result{Machine: *m}, err
	}
	return res, nil
}

func (im Importer) importBootDisk(ctx context.Context, req Request, dir string, m *vmdef.Machine, progress Progress) (*Result, error) {
	boot, err := bootDisk(req, m)
	if err != nil {
		return nil, err
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
	disk := m.Disks[boot]
	path := diskPath(m, dir, disk.Path)
	src, err := diskAt(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: boot disk %d: %w", req.Path, boot+1, err)
	}
	checkDeclared(m, disk, src)
	data, err := dataDisks(req, dir, m, boot)
	if err != nil {
		return nil, err
	}
	return im.importDisk(ctx, req, src, data, *m, progress)
}

// dataDisks returns every image-file disk of m but the boot one, in the
// definition's order: the guest's data disks. A disk that is not an image
// file (a host device, a network disk) is left out; its parser warned of
// it. One that names a file that is missing or not an importable image
// fails the import, naming it: a migration must not drop a disk.
func dataDisks(req Request, dir string, m *vmdef.Machine, boot int) ([]diskSource, error) {
	var data []diskSource
	for i, d := range m.Disks {
		if i == boot || d.Device != "" {
			continue
		}
		src, err := diskAt(diskPath(m, dir, d.Path))
		if err != nil {
			return nil, fmt.Errorf("import %s: disk %d (a data disk of the guest): %w", req.Path, i+1, err)
		}
		checkDeclared(m, d, src)
		data = append(data, src)
	}
	return data, nil
}

// checkDeclared warns when the format a definition declares for a disk is
// not what its content is, which is how it is read.
func checkDeclared(m *vmdef.Machine, disk vmdef.Disk, src diskSource) {
	if declared := disk.Format; declared != "" && declared != src.Format.QEMUFormat() && !(declared == "vhd" && src.Format.QEMUFormat() == "vpc") {
		m.Warnf("disk %s: the definition says %s, its content is %s; read as %s", disk.Path, declared, src.Format, src.Format)
	}
}

// sourceNames names each definition format for messages.
var sourceNames = map[string]string{
	"ovf": "OVF descriptor", "vmx": "VMware .vmx", "vbox": "VirtualBox .vbox",
	"libvirt": "libvirt domain XML", "xl": "Xen xl config",
}

// bootDisk returns the index in m.Disks of the disk to boot from: the
// first, or the one req.Disk names. A disk that is not an image file (a
// host device, a network disk) is refused as the boot disk, with what to
// do: the guest never boots from a data disk in its stead.
func bootDisk(req Request, m *vmdef.Machine) (int, error) {
	what := cmp.Or(sourceNames[m.Source], "definition")
	if len(m.Disks) == 0 {
		hint := ""
		if m.Source == "xl" {
			hint = " (no disk = [ ... ] entry names an image file)"
		}
		return 0, fmt.Errorf("%w: import %s: the %s defines no hard disk to import%s", api.ErrInvalid, req.Path, what, hint)
	}
	if req.Disk < 0 || req.Disk > len(m.Disks) {
		return 0, fmt.Errorf("%w: --disk %d: the %s has %d disk(s): choose one of %s", api.ErrInvalid, req.Disk, what, len(m.Disks), diskList(m, -1))
	}
	boot := max(req.Disk, 1) - 1
	d := m.Disks[boot]
	if d.Device == "" {
		return boot, nil
	}
	others := diskList(m, boot)
	if others == "" {
		others = "none: the definition has no other disk"
	}
	fix := "copy it into an image file (" + convertCommand(d.Path) + ") and name that file in the " + what
	if d.Device == vmdef.DeviceUnregistered {
		fix = "add its image to the .vbox's MediaRegistry (VirtualBox keeps it in VirtualBox.xml)"
	}
	return 0, fmt.Errorf("%w: import %s: boot disk %d is the %s %s and cannot be imported: %s, or boot another disk with --disk N (%s)",
		api.ErrInvalid, req.Path, boot+1, d.Device, d.Path, fix, others)
}

// diskList lists m's image-file disks but skip as "N: path", for messages.
func diskList(m *vmdef.Machine, skip int) string {
	var list []string
	for i, d := range m.Disks {
		if i != skip && d.Device == "" {
			list = append(list, fmt.Sprintf("%d: %s", i+1, d.Path))
		}
	}
	return strings.Join(list, ", ")
}

// convertCommand is the qemu-img command that copies src into a qcow2
// file polyvisor imports, quoted for a shell.
func convertCommand(src string) string {
	base := strings.TrimSuffix(filepath.Base(src), filepath.Ext(src))
	if base == "" || base == "." || base == "/" {
		base = "disk"
	}
	dst := filepath.Join(filepath.Dir(src), base+".qcow2")
	if dst == src {
		dst = filepath.Join(filepath.Dir(src), base+"-converted.qcow2")
	}
	if strings.HasPrefix(dst, "/dev/") || !strings.HasPrefix(src, "/") {
		dst = base + ".qcow2" // a device or network disk: into the current directory
	}
	return "qemu-img convert -O qcow2 " + shellQuote(src) + " " + shellQuote(dst)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:=@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// diskPath is where to open a disk the definition names: relative to dir
// unless absolute. A .vmx made on ESXi names its disks by datastore path
// (/vmfs/volumes/DS/dir/disk.vmdk, or "[DS] dir/disk.vmdk"); when that
// does not exist here, the disk is looked for beside the .vmx, as it is
// when the VM's folder was copied off the datastore.
func diskPath(m *vmdef.Machine, dir, path string) string {
	if m.Source == "vmx" {
		if rest, ok := strings.CutPrefix(path, "["); ok {
			if _, rel, found := strings.Cut(rest, "]"); found {
				beside := filepath.Join(dir, filepath.Base(strings.TrimSpace(rel)))
				m.Warnf("disk %s: a datastore path; using %s beside the .vmx", path, beside)
				return beside
			}
		}
		if filepath.IsAbs(path) {
			if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
				beside := filepath.Join(dir, filepath.Base(path))
				if _, err := os.Lstat(beside); err == nil {
					m.Warnf("disk %s does not exist here; using %s beside the .vmx", path, beside)
					return beside
				}
			}
		}
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	return path
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
		return diskSource{}, fmt.Errorf("%w: %s is not a regular file (a host device is never imported): copy it into an image file (%s)", api.ErrInvalid, path, convertCommand(path))
	}
	format, err := imageformat.Detect(f, info.Size())
	if err != nil {
		return diskSource{}, fmt.Errorf("%w: %s: %v", api.ErrInvalid, path, err)
	}
	if err := checkImportable(path, format); err != nil {
		return diskSource{}, err
	}
	return diskSource{Path: path, Format: format}, nil
}

// checkImportable refuses a file that is not a disk image polyvisor
// imports, with the command that converts one qemu-img reads.
func checkImportable(path string, format imageformat.Format) error {
	if from := format.ConvertFrom(); from != "" {
		return fmt.Errorf("%w: %s is a %s image, which polyvisor does not import; convert it first: %s", api.ErrInvalid, path, from, convertCommand(path))
	}
	if format.QEMUFormat() == "" {
		return fmt.Errorf("%w: %s is %s, not a disk image", api.ErrInvalid, path, format)
	}
	return nil
}

// importOVA extracts an OVA into a work directory, checking its manifest,
// and imports the disks its descriptor names.
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
