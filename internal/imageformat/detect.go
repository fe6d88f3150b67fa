// Package imageformat tells what a file to import is from its content,
// never its name: a disk image (qcow2, VMDK in its variants, VDI, VHD,
// VHDX, raw), an appliance (OVA, OVF) or a guest definition (VMware .vmx,
// VirtualBox .vbox, libvirt domain XML, Xen xl.cfg). Imports are hostile
// input: Detect reads at most a few KiB from fixed places, and never
// trusts a header's sizes beyond what it reads.
package imageformat

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// Format names what a file is.
type Format string

// The formats Detect tells apart.
const (
	QCOW2       Format = "qcow2"
	VMDKSparse  Format = "vmdk-monolithic-sparse" // hosted sparse extent (VMware Workstation)
	VMDKStream  Format = "vmdk-stream-optimized"  // compressed grains (OVA disks)
	VMDKText    Format = "vmdk-descriptor"        // a text descriptor naming extent files
	VDI         Format = "vdi"
	VHDFixed    Format = "vhd-fixed"
	VHDDynamic  Format = "vhd-dynamic"
	VHDX        Format = "vhdx"
	Raw         Format = "raw" // a disk with an MBR or GPT, or an ISO 9660 image
	OVA         Format = "ova"
	OVF         Format = "ovf"
	VMX         Format = "vmx"
	VBox        Format = "vbox"
	LibvirtXML  Format = "libvirt-xml"
	XLConfig    Format = "xl-cfg"
	unknownName        = "unknown"
)

// Disk image formats qemu-img reads that polyvisor does not import: the
// user converts them first (ConvertCommand).
const (
	QED       Format = "qed"
	Parallels Format = "parallels"
	Bochs     Format = "bochs"
	Cloop     Format = "cloop"
	DMG       Format = "dmg"
)

// ConvertFrom is the qemu-img format name of a disk image polyvisor does
// not import but qemu-img reads; "" for the others.
func (f Format) ConvertFrom() string {
	switch f {
	case QED, Parallels, Bochs, Cloop, DMG:
		return string(f)
	}
	return ""
}

// QEMUFormat is the qemu-img format name of a disk image format; "" for
// the others.
func (f Format) QEMUFormat() string {
	switch f {
	case QCOW2:
		return "qcow2"
	case VMDKSparse, VMDKStream, VMDKText:
		return "vmdk"
	case VDI:
		return "vdi"
	case VHDFixed, VHDDynamic:
		return "vpc"
	case VHDX:
		return "vhdx"
	case Raw:
		return "raw"
	}
	return ""
}

// ErrUnknown says that the content matched no format.
var ErrUnknown = errors.New("not a disk image, appliance, guest definition or container image polyvisor knows")

// headSize is how much of the file's start Detect reads.
const headSize = 64 << 10

// Detect reads r (of size bytes) and says what it is.
func Detect(r io.ReaderAt, size int64) (Format, error) {
	head := make([]byte, min(size, headSize))
	if n, err := r.ReadAt(head, 0); n < len(head) {
		return "", fmt.Errorf("read the file's start: %w", errors.Join(err, io.ErrUnexpectedEOF))
	}
	le, be := binary.LittleEndian, binary.BigEndian
	switch {
	case len(head) >= 8 && string(head[:4]) == "QFI\xfb" && (be.Uint32(head[4:]) == 2 || be.Uint32(head[4:]) == 3):
		return QCOW2, nil
	case len(head) >= 8 && string(head[:8]) == "vhdxfile":
		return VHDX, nil
	case len(head) >= 0x44 && le.Uint32(head[0x40:]) == 0xbeda107f:
		return VDI, nil
	case len(head) >= 512 && string(head[:4]) == "KDMV":
		return vmdkSparseKind(head), nil
	case len(head) >= 1024 && string(head[:8]) == "conectix" && string(head[512:520]) == "cxsparse":
		return VHDDynamic, nil
	case len(head) >= 8 && string(head[:4]) == "QED\x00":
		return QED, nil
	case len(head) >= 16 && (string(head[:16]) == "WithoutFreeSpace" || string(head[:16]) == "WithouFreSpacExt"):
		return Parallels, nil
	case len(head) >= 32 && string(head[:22]) == "Bochs Virtual HD Image":
		return Bochs, nil
	case bytes.HasPrefix(head, []byte("#!/bin/sh\n#V2.0 Format\n")):
		return Cloop, nil
	case len(head) >= 262 && string(head[257:262]) == "ustar" && ovaDescriptorFirst(head):
		// DSP0243: an OVA's first member is its descriptor. Any other tar
		// (a root tree, a docker save) is not told here.
		return OVA, nil
	}
	if size >= 512 {
		footer := make([]byte, 512)
		_, err := r.ReadAt(footer, size-512)
		switch {
		case err == nil && string(footer[:8]) == "conectix" && be.Uint32(footer[60:]) == 2:
			return VHDFixed, nil
		case err == nil && string(footer[:4]) == "koly" && be.Uint32(footer[4:]) == 4 && be.Uint32(footer[8:]) == 512:
			// An Apple UDIF disk image's trailer: signature, version, size.
			return DMG, nil
		}
	}
	if f, ok := detectText(head); ok {
		return f, nil
	}
	if len(head) >= 512 && head[510] == 0x55 && head[511] == 0xaa {
		return Raw, nil // an MBR (or a GPT's protective MBR)
	}
	if size >= 0x8006 {
		iso := make([]byte, 5)
		if _, err := r.ReadAt(iso, 0x8001); err == nil && string(iso) == "CD001" {
			return Raw, nil
		}
	}
	return "", ErrUnknown
}

// vmdkSparseKind tells a stream-optimized sparse extent (its compressed
// grains flag, bit 16) from a plain hosted one.
func vmdkSparseKind(head []byte) Format {
	if binary.LittleEndian.Uint32(head[8:])&(1<<16) != 0 {
		return VMDKStream
	}
	return VMDKSparse
}

var (
	vmxKey     = lazyre.New(`(?m)^\s*(config\.version|virtualHW\.version|displayName)\s*=\s*"`)
	xlDiskKey  = lazyre.New(`(?m)^\s*disk\s*=\s*\[`)
	xlOtherKey = lazyre.New(`(?m)^\s*(name|memory|vcpus|builder|type)\s*=`)
	// Keys only an xl.cfg has, telling one that lacks a disk line (which
	// the import then refuses by name) from any other key = value text.
	xlOwnKey  = lazyre.New(`(?m)^\s*(builder|type)\s*=\s*["']?(hvm|pv|pvh|generic)["']?\s*$|^\s*(vif|bootloader|on_poweroff|on_reboot|on_crash|maxvcpus|maxmem|vfb|pci|vnc)\s*=`)
	xlNameKey = lazyre.New(`(?m)^\s*name\s*=\s*["']`)
)

// detectText recognizes the text formats: a VMDK descriptor, a .vmx, an
// xl.cfg, and XML documents by their root element.
func detectText(head []byte) (Format, bool) {
	// qemu-img pads a VMDK descriptor with NULs to a sector; otherwise
	// text has none.
	head = bytes.TrimRight(head, "\x00")
	if len(head) == 0 || bytes.IndexByte(head, 0) >= 0 {
		return "", false
	}
	text := string(head)
	switch {
	case strings.Contains(text, "# Disk DescriptorFile") || (strings.Contains(text, "createType=") && strings.Contains(text, "RW ")):
		return VMDKText, true
	case vmxKey().MatchString(text):
		return VMX, true
	case xlDiskKey().MatchString(text) && xlOtherKey().MatchString(text),
		xlNameKey().MatchString(text) && xlOwnKey().MatchString(text):
		return XLConfig, true
	}
	if root, ok := xmlRoot(head); ok {
		switch {
		case root.Local == "Envelope" && strings.HasPrefix(root.Space, "http://schemas.dmtf.org/ovf/envelope/"):
			return OVF, true
		case root.Local == "VirtualBox":
			return VBox, true
		case root.Local == "domain" && root.Space == "":
			return LibvirtXML, true
		}
	}
	return "", false
}

// xmlRoot returns the name of an XML document's root element, reading no
// further than it: no DTD is processed and no entity expanded.
func xmlRoot(head []byte) (xml.Name, bool) {
	dec := xml.NewDecoder(bytes.NewReader(head))
	dec.Strict = true
	for range 64 {
		tok, err := dec.RawToken()
		if err != nil {
			return xml.Name{}, false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name
			// RawToken leaves prefixes unresolved: resolve the root's own.
			for _, a := range t.Attr {
				if (name.Space == "" && a.Name.Space == "" && a.Name.Local == "xmlns") || (a.Name.Space == "xmlns" && a.Name.Local == name.Space) {
					name.Space = a.Value
				}
			}
			return name, true
		case xml.Directive:
			if bytes.Contains(bytes.ToUpper(t), []byte("ENTITY")) {
				return xml.Name{}, false // entity declarations are refused outright
			}
		}
	}
	return xml.Name{}, false
}

// String names the format for messages.
func (f Format) String() string {
	if f == "" {
		return unknownName
	}
	return string(f)
}

// ovaDescriptorFirst reports whether a tar's first member, whose header
// starts head, is named *.ovf.
func ovaDescriptorFirst(head []byte) bool {
	name := string(bytes.TrimRight(head[:100], "\x00"))
	return strings.HasSuffix(strings.ToLower(name), ".ovf")
}
