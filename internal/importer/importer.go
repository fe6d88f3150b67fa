// Package importer brings guests made by other products into polyvisor as
// templates: disk images (converted with qemu-img to a qcow2 base booted
// by firmware), appliances and guest definitions (OVF/OVA, VMware,
// VirtualBox, libvirt, Xen: their disks, the first a boot disk and the
// others data disks, plus the CPUs, memory, MACs and firmware they state), and container images (OCI layouts, docker save
// tarballs, rootfs tarballs). What it reads is hostile input: formats are
// told by content, archives are extracted without following links, and a
// failed import leaves nothing behind.
package importer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/imageformat"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Request says what to import.
type Request struct {
	// Path is the file (or OCI layout directory) to import, absolute.
	Path string
	// Name names the template; "" takes the definition's name, or the
	// file's.
	Name string
	// Firmware says how the disk boots: bios or uefi. "" takes the
	// definition's, and BIOS for a bare disk image.
	Firmware string
	// Disk is the 1-based index, among the definition's disks, of the
	// disk to boot from; 0 takes the definition's boot disk (its first).
	Disk int
	// Pending makes the template marked pending (template.MarkPending),
	// for an import that goes on to make a guest of it and settles it
	// then.
	Pending bool
}

// add is Templates.Add, marking the template pending when req says.
func (im Importer) add(t *api.Template, req Request, fill func(staging string) error) error {
	return im.Templates.Add(t, func(staging string) error {
		if err := fill(staging); err != nil {
			return err
		}
		if req.Pending {
			return template.MarkPending(staging)
		}
		return nil
	})
}

// Result is what an import made.
type Result struct {
	Template *api.Template
	// Machine is what the definition states (CPUs, memory, NICs); its
	// Source is "" for a bare disk or a container image.
	Machine vmdef.Machine
	// Format is what the file was found to be.
	Format string
}

// Importer imports into a template store.
type Importer struct {
	Templates template.Store
}

// Progress reports an import's phase and how far it got.
type Progress = template.Progress

// Import detects what req.Path is and makes a template of it. Warnings,
// one line each, name what the source defines that the template does not
// carry. On failure the Result is nil, or carries in Machine.Warnings what
// was found before the failure, with no Template: a refusal must not hide
// why.
func (im Importer) Import(ctx context.Context, req Request, progress Progress) (*Result, error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	if req.Firmware != "" && req.Firmware != vmdef.FirmwareBIOS && req.Firmware != vmdef.FirmwareUEFI {
		return nil, fmt.Errorf("%w: firmware %q: use bios or uefi", api.ErrInvalid, req.Firmware)
	}
	if req.Name != "" {
		if err := guest.ValidateName(req.Name); err != nil {
			return nil, err
		}
	}
	if !filepath.IsAbs(req.Path) {
		return nil, fmt.Errorf("%w: path %q: give an absolute path", api.ErrInvalid, req.Path)
	}
	info, err := os.Stat(req.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrNotFound, req.Path, errors.Unwrap(err))
	}
	if info.IsDir() {
		return im.importOCILayout(ctx, req, progress)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: import %s: not a regular file or directory", api.ErrInvalid, req.Path)
	}
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	format, err := imageformat.Detect(f, info.Size())
	f.Close()
	switch {
	case errors.Is(err, imageformat.ErrUnknown):
		return im.importTarball(ctx, req, progress)
	case err != nil:
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	var res *Result
	switch format {
	case imageformat.OVA:
		res, err = im.importOVA(ctx, req, progress)
	case imageformat.OVF, imageformat.VMX, imageformat.VBox, imageformat.LibvirtXML, imageformat.XLConfig:
		res, err = im.importDefinition(ctx, req, format, progress)
	default:
		if err := checkImportable(req.Path, format); err != nil {
			return nil, fmt.Errorf("import %s: %w", req.Path, err)
		}
		if req.Disk > 1 {
			return nil, fmt.Errorf("%w: --disk %d: %s is a single disk image", api.ErrInvalid, req.Disk, req.Path)
		}
		res, err = im.importDisk(ctx, req, diskSource{Path: req.Path, Format: format}, nil, vmdef.Machine{Firmware: req.Firmware}, progress)
	}
	if err != nil {
		return res, err
	}
	res.Format = string(format)
	return res, nil
}

// templateName is the name the imported template gets: the one asked
// for, else the definition's, else the file's, made a DNS label.
func templateName(req Request, machineName string) (string, error) {
	if req.Name != "" {
		return req.Name, nil
	}
	for _, candidate := range []string{machineName, strings.TrimSuffix(filepath.Base(req.Path), filepath.Ext(req.Path))} {
		if name := dnsLabel(candidate); name != "" {
			return name, nil
		}
	}
	return "", fmt.Errorf("%w: name: nothing in %s makes a guest name; pass one", api.ErrInvalid, req.Path)
}

// dnsLabel turns a vendor's display name ("Debian 12 (64-bit)") into a
// DNS label ("debian-12-64-bit"), or "" when nothing is left.
func dnsLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			if b.Len() == 0 && c <= '9' {
				b.WriteString("g")
			}
			b.WriteRune(c)
			dash = false
		case b.Len() > 0 && !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	if guest.ValidateName(name) != nil {
		return ""
	}
	return name
}
