package ovf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/polyvisor/polyvisor/internal/imageformat"
)

// checkDisk reads a disk file's content and returns its format as vmdef
// names it (qcow2, vmdk, vdi, vhd, vhdx, raw). The content decides, never
// the descriptor: a disk that is not the format the descriptor declares
// is refused, and so is an image that names other files (a VMDK text
// descriptor, a qcow2 backing or external data file, a VMDK parent, a
// differencing VHD): an appliance's disks must be self-contained, or
// converting one would read whatever host file the appliance names.
func checkDisk(name string, r io.ReaderAt, size int64, declared string) (string, error) {
	f, err := imageformat.Detect(r, size)
	if errors.Is(err, imageformat.ErrUnknown) {
		return "", invalidf("disk %q: %w", name, err)
	}
	if err != nil {
		return "", fmt.Errorf("disk %q: %w", name, err)
	}
	var format string
	switch f {
	case imageformat.QCOW2:
		format, err = "qcow2", checkQCOW2(r)
	case imageformat.VMDKSparse, imageformat.VMDKStream:
		format, err = "vmdk", checkVMDKSparse(r, size)
	case imageformat.VMDKText:
		err = errors.New("it is a VMDK text descriptor naming extent files; an appliance's disk must be one self-contained file (streamOptimized)")
	case imageformat.VDI:
		format = "vdi"
	case imageformat.VHDFixed:
		format = "vhd"
	case imageformat.VHDDynamic:
		format, err = "vhd", checkVHDDynamic(r)
	case imageformat.VHDX:
		format = "vhdx"
	case imageformat.Raw:
		format = "raw"
	default:
		err = fmt.Errorf("it is %s content, not a disk image", f)
	}
	if err != nil {
		return "", invalidf("disk %q: %w", name, err)
	}
	if declared != "" && declared != format {
		return "", invalidf("disk %q: the descriptor declares a %s disk but its content is %s (%s)", name, declared, format, f)
	}
	return format, nil
}

// checkQCOW2 refuses a backing file (header offset 8) and, in version 3,
// an external data file (incompatible feature bit 2, offset 72).
func checkQCOW2(r io.ReaderAt) error {
	head := make([]byte, 80)
	n, _ := r.ReadAt(head, 0)
	be := binary.BigEndian
	if n >= 16 && be.Uint64(head[8:]) != 0 {
		return errors.New("it is a qcow2 image with a backing file")
	}
	if n >= 80 && be.Uint32(head[4:]) >= 3 && be.Uint64(head[72:])&(1<<2) != 0 {
		return errors.New("it is a qcow2 image with an external data file")
	}
	return nil
}

// maxEmbeddedDescriptor bounds the text descriptor of a sparse VMDK
// read here (VMware writes 1 to 20 sectors).
const maxEmbeddedDescriptor = 64 << 10

// checkVMDKSparse refuses a sparse VMDK whose embedded descriptor names
// a parent (parentFileNameHint): QEMU would open it as a backing file.
func checkVMDKSparse(r io.ReaderAt, size int64) error {
	head := make([]byte, 44)
	if _, err := r.ReadAt(head, 0); err != nil {
		return fmt.Errorf("its VMDK header is truncated: %w", err)
	}
	le := binary.LittleEndian
	offset, sectors := le.Uint64(head[28:]), le.Uint64(head[36:])
	if offset == 0 || sectors == 0 {
		return nil // no embedded descriptor
	}
	if sectors > maxEmbeddedDescriptor/512 || offset > uint64(size)/512 {
		return fmt.Errorf("its embedded VMDK descriptor (sector %d, %d sectors) lies outside the file or is larger than %d bytes", offset, sectors, maxEmbeddedDescriptor)
	}
	desc := make([]byte, sectors*512)
	n, _ := r.ReadAt(desc, int64(offset)*512)
	if bytes.Contains(bytes.ToLower(desc[:n]), []byte("parentfilenamehint")) {
		return errors.New("it is a VMDK delta disk naming a parent (parentFileNameHint)")
	}
	return nil
}

// checkVHDDynamic refuses a differencing VHD (footer disk type 4).
func checkVHDDynamic(r io.ReaderAt) error {
	footer := make([]byte, 64)
	if _, err := r.ReadAt(footer, 0); err != nil {
		return fmt.Errorf("its VHD footer is truncated: %w", err)
	}
	if binary.BigEndian.Uint32(footer[60:]) == 4 {
		return errors.New("it is a differencing VHD naming a parent")
	}
	return nil
}
