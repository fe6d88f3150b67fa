package safetar

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/ulikunitz/xz"
)

// bzip2Tar is a bzip2-compressed tar holding "hello" = "world" (Go has no
// bzip2 writer, so it was made once with Python's tarfile and bz2).
const bzip2Tar = "QlpoOTFBWSZTWUoyNAgAAG57gMmAAAJAAEeAAAhmRJ6ACAggAFRCAAANGgSRQMjIMmg39YDoQc4oQiXcoE9o6IEMDE3E7COHQl0KIXZilBwizYlgfCMz9QREA+LuSKcKEglGRoEA"

func TestDecompressSniffsTheStream(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	data := buildTar(t, file("hello", "world"))
	bz, err := base64.StdEncoding.DecodeString(bzip2Tar)
	if err != nil {
		t.Fatal(err)
	}
	streams := map[string][]byte{
		"plain": data,
		"gzip":  compress(t, data, func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }),
		"xz": compress(t, data, func(w io.Writer) io.WriteCloser {
			zw, err := xz.NewWriter(w)
			if err != nil {
				t.Fatal(err)
			}
			return zw
		}),
		"zstd": compress(t, data, func(w io.Writer) io.WriteCloser {
			zw, err := zstd.NewWriter(w)
			if err != nil {
				t.Fatal(err)
			}
			return zw
		}),
		"bzip2": bz,
	}
	for name, stream := range streams {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t, t.TempDir())
			r, err := Decompress(bytes.NewReader(stream))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := Extract(t.Context(), r, s.dest, Options{}); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(s.dest, "hello")); err != nil || string(b) != "world" {
				t.Errorf("hello = %q, %v", b, err)
			}
		})
	}
}

func TestDecompressBadGzipFails(t *testing.T) {
	if _, err := Decompress(bytes.NewReader([]byte{0x1f, 0x8b, 0x08, 0xff})); err == nil {
		t.Fatal("a truncated gzip header was accepted")
	}
}

func compress(t *testing.T, data []byte, newWriter func(io.Writer) io.WriteCloser) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := newWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
