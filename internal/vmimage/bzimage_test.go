package vmimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"os/exec"
	"testing"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// fakeBzImage returns a bzImage-shaped file whose setup header locates payload.
func fakeBzImage(payload []byte, protocol uint16) []byte {
	const setupSects, offset = 3, 0x100
	image := make([]byte, (setupSects+1)*512+offset)
	image[setupSectsOffset] = setupSects
	copy(image[headerMagicOffset:], "HdrS")
	binary.LittleEndian.PutUint16(image[protocolOffset:], protocol)
	binary.LittleEndian.PutUint32(image[payloadOffsetOffset:], offset)
	binary.LittleEndian.PutUint32(image[payloadLengthOffset:], uint32(len(payload)))
	return append(append(image, payload...), "trailing setup data"...)
}

// withSize appends the uncompressed size as the kernel's build does after xz and zstd.
func withSize(stream []byte, size int) []byte {
	return binary.LittleEndian.AppendUint32(append([]byte(nil), stream...), uint32(size))
}

func TestBzImagePayloadDecompressesGzipAndXz(t *testing.T) {
	kernel := bytes.Repeat([]byte("not really a kernel "), 1000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(kernel)
	zw.Close()
	payloads := map[string][]byte{"gzip": gz.Bytes()}
	cmd := exec.Command(hostreq.Need(t, "xz"), "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(kernel)
	xz, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	payloads["xz"] = withSize(xz, len(kernel))
	for method, payload := range payloads {
		got, size, err := bzImagePayload(fakeBzImage(payload, 0x20f))
		if err != nil || !bytes.Equal(got, payload) || int(size) != len(kernel) {
			t.Fatalf("%s: payload of %d bytes, size %d, %v", method, len(got), size, err)
		}
		out, err := decompressPayload(context.Background(), got)
		if err != nil || !bytes.Equal(out, kernel) {
			t.Fatalf("%s: decompressed %d bytes, %v", method, len(out), err)
		}
	}
}

func TestBzImagePayloadRefusesOtherFiles(t *testing.T) {
	for name, image := range map[string][]byte{
		"empty":        nil,
		"no header":    make([]byte, 4096),
		"old protocol": fakeBzImage([]byte("12345678"), 0x206),
		"past the end": fakeBzImage([]byte("12345678"), 0x20f)[:2100],
	} {
		if _, _, err := bzImagePayload(image); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decompressPayload(context.Background(), []byte("BZh91AY&SY")); err == nil {
		t.Error("bzip2 payload accepted")
	}
}

func FuzzBzImagePayload(f *testing.F) {
	f.Add(fakeBzImage([]byte("12345678"), 0x20f))
	f.Add(fakeBzImage(nil, 0x20f))
	f.Fuzz(func(t *testing.T, image []byte) {
		payload, _, err := bzImagePayload(image)
		if err == nil && (len(payload) < 8 || len(payload) > len(image)) {
			t.Fatalf("payload of %d bytes from a %d-byte image", len(payload), len(image))
		}
	})
}

func FuzzHasPVHEntry(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		hasPVHEntry(file) // must not panic on any notes
	})
}

func TestRawKernelImage(t *testing.T) {
	image := make([]byte, 128)
	copy(image, "MZ")
	copy(image[0x38:], "ARM\x64")
	if got, err := rawKernelImage(image, "arm64"); err != nil || !bytes.Equal(got, image) {
		t.Fatalf("plain Image: %v", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(image)
	zw.Close()
	if got, err := rawKernelImage(gz.Bytes(), "arm64"); err != nil || !bytes.Equal(got, image) {
		t.Fatalf("Image.gz: %v", err)
	}
	if _, err := rawKernelImage(image, "riscv64"); err == nil {
		t.Fatal("an arm64 Image accepted as riscv64")
	}
	zboot := append([]byte("MZ\x00\x00zimg"), make([]byte, 120)...)
	if _, err := rawKernelImage(zboot, "arm64"); err == nil {
		t.Fatal("an EFI zboot image accepted")
	}
}
