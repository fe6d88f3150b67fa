package safetar

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Magic numbers at the start of compressed streams. A tar stream starts
// with an entry name, so these are checked in full where a name could
// collide.
var (
	gzipMagic  = []byte{0x1f, 0x8b, 0x08}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	bzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59} // after "BZh1".."BZh9"
)

// Decompress returns the tar stream inside r, undoing gzip, xz, zstd or
// bzip2 compression recognised by the stream's first bytes (never by a file
// name); anything else passes through unchanged for Extract to judge. Close
// releases the decompressor; it does not close r.
//
// An xz stream allocates the dictionary size its header declares (commonly
// 8–64 MiB, at most 4 GiB of address space, touched only as data is
// produced); zstd windows are capped at 512 MiB.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(10)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading archive header: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("opening gzip stream: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, xzMagic):
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("opening xz stream: %w", err)
		}
		return io.NopCloser(zr), nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(512<<20))
		if err != nil {
			return nil, fmt.Errorf("opening zstd stream: %w", err)
		}
		return zr.IOReadCloser(), nil
	case len(magic) == 10 && string(magic[:3]) == "BZh" && magic[3] >= '1' && magic[3] <= '9' &&
		bytes.Equal(magic[4:], bzip2Block):
		return io.NopCloser(bzip2.NewReader(br)), nil
	}
	return io.NopCloser(br), nil
}
