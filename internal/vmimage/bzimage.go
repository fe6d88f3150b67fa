package vmimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Offsets in the x86 boot protocol's setup header (Documentation/arch/x86/boot.rst).
const (
	setupSectsOffset    = 0x1f1 // number of 512-byte setup sectors after the boot sector
	headerMagicOffset   = 0x202 // "HdrS"
	protocolOffset      = 0x206 // boot protocol version
	payloadOffsetOffset = 0x248 // compressed kernel, from the start of protected-mode code
	payloadLengthOffset = 0x24c
	minPayloadProtocol  = 0x208 // the first protocol version with payload_offset/length
)

// bzImagePayload returns the compressed kernel inside an x86 bzImage, as its setup header
// locates it, and the uncompressed size the kernel's build appended to it (for gzip, the
// stream's own size field, which sits in the same place).
func bzImagePayload(image []byte) (payload []byte, size uint32, err error) {
	if len(image) < payloadLengthOffset+4 || string(image[headerMagicOffset:headerMagicOffset+4]) != "HdrS" {
		return nil, 0, errors.New("not an x86 bzImage: no HdrS setup header")
	}
	if protocol := binary.LittleEndian.Uint16(image[protocolOffset:]); protocol < minPayloadProtocol {
		return nil, 0, fmt.Errorf("bzImage boot protocol %#x is older than %#x, which locates the payload", protocol, minPayloadProtocol)
	}
	setupSects := int(image[setupSectsOffset])
	if setupSects == 0 {
		setupSects = 4 // what the boot protocol says a zero means
	}
	start := uint64(setupSects+1)*512 + uint64(binary.LittleEndian.Uint32(image[payloadOffsetOffset:]))
	length := uint64(binary.LittleEndian.Uint32(image[payloadLengthOffset:]))
	if length < 8 || start+length > uint64(len(image)) {
		return nil, 0, fmt.Errorf("bzImage payload [%d, +%d) lies outside the %d-byte file", start, length, len(image))
	}
	payload = image[start : start+length]
	return payload, binary.LittleEndian.Uint32(payload[len(payload)-4:]), nil
}

// vmlinuxFromBzImage decompresses the ELF vmlinux out of an x86 bzImage and checks that it
// has the PVH entry point QEMU boots it through.
func vmlinuxFromBzImage(ctx context.Context, image []byte) ([]byte, error) {
	payload, size, err := bzImagePayload(image)
	if err != nil {
		return nil, err
	}
	vmlinux, err := decompressPayload(ctx, payload)
	if err != nil {
		return nil, err
	}
	if uint32(len(vmlinux)) != size {
		return nil, fmt.Errorf("bzImage payload decompressed to %d bytes, its trailer says %d", len(vmlinux), size)
	}
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return nil, fmt.Errorf("bzImage payload is not an ELF vmlinux: %w", err)
	}
	defer f.Close()
	if !hasPVHEntry(f) {
		return nil, errors.New("vmlinux has no PVH entry note (CONFIG_PVH): QEMU could not boot it directly")
	}
	return vmlinux, nil
}

// decompressPayload decompresses a bzImage payload by its magic number: gzip in Go, xz and
// zstd with their tools (the Go standard library reads neither). The kernel's build appends
// the uncompressed size after xz and zstd streams; that trailer is cut off here.
func decompressPayload(ctx context.Context, payload []byte) ([]byte, error) {
	var out bytes.Buffer
	switch {
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		r, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("gunzip bzImage payload: %w", err)
		}
		r.Multistream(false)
		if _, err := io.Copy(&out, r); err != nil {
			return nil, fmt.Errorf("gunzip bzImage payload: %w", err)
		}
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		if err := run(ctx, bytes.NewReader(payload[:len(payload)-4]), &out, "xz", "-dc"); err != nil {
			return nil, fmt.Errorf("unxz bzImage payload: %w", err)
		}
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		if err := run(ctx, bytes.NewReader(payload[:len(payload)-4]), &out, "zstd", "-dcq"); err != nil {
			return nil, fmt.Errorf("unzstd bzImage payload: %w", err)
		}
	default:
		return nil, fmt.Errorf("bzImage payload compressed with an unsupported method (magic % x)", payload[:4])
	}
	return out.Bytes(), nil
}

// xenPhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the note that gives a kernel's PVH entry point.
const xenPhys32Entry = 18

// hasPVHEntry reports whether the ELF kernel f carries a Xen PHYS32_ENTRY note, which is what
// QEMU looks for to boot an uncompressed kernel through PVH.
func hasPVHEntry(f *elf.File) bool {
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(prog.Open())
		if err != nil {
			continue
		}
		for len(notes) >= 12 {
			nameSize := int(f.ByteOrder.Uint32(notes[0:]))
			descSize := int(f.ByteOrder.Uint32(notes[4:]))
			noteType := f.ByteOrder.Uint32(notes[8:])
			nameEnd := 12 + align4(nameSize)
			next := nameEnd + align4(descSize)
			if nameSize < 0 || descSize < 0 || next > len(notes) || next <= 0 {
				break
			}
			if noteType == xenPhys32Entry && string(bytes.TrimRight(notes[12:12+nameSize], "\x00")) == "Xen" {
				return true
			}
			notes = notes[next:]
		}
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }
