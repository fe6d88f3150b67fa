package growfs

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mkfs makes an ext4 image of size bytes with mke2fs, as templates do.
func mkfs(t *testing.T, size int64, extra ...string) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-q", "-F", "-t", "ext4"}, extra...)
	if out, err := exec.Command("mke2fs", append(args, path)...).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	return f
}

func TestReadSuperblockOfMke2fsImages(t *testing.T) {
	for _, tc := range []struct {
		size      int64
		blockSize uint64
		extra     []string
	}{
		{64 << 20, 4096, []string{"-b", "4096"}},
		{64 << 20, 1024, []string{"-b", "1024"}},
		{96 << 20, 4096, []string{"-b", "4096", "-O", "64bit"}},
		{40 << 20, 2048, []string{"-b", "2048", "-O", "^64bit"}},
	} {
		f := mkfs(t, tc.size, tc.extra...)
		sb, err := ReadSuperblock(f)
		if err != nil {
			t.Fatalf("%v: %v", tc.extra, err)
		}
		if sb.BlockSize != tc.blockSize || sb.Bytes() != uint64(tc.size) {
			t.Errorf("%v: got %d blocks of %d, want %d bytes in blocks of %d", tc.extra, sb.Blocks, sb.BlockSize, tc.size, tc.blockSize)
		}
	}
}

func TestReadSuperblockRefusesOtherData(t *testing.T) {
	for name, data := range map[string][]byte{
		"zeros":     make([]byte, 4096),
		"too short": make([]byte, 1500),
		"bad block size": func() []byte {
			b := make([]byte, 4096)
			b[1024+offMagic], b[1024+offMagic+1] = 0x53, 0xEF
			b[1024+offLogBlockSize] = 30
			return b
		}(),
	} {
		if sb, err := ReadSuperblock(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: read %+v, want an error", name, sb)
		}
	}
}

func TestDeviceOfNamesTheBlockDevice(t *testing.T) {
	// The test's own root: on a block device on most hosts, on an overlay
	// (no block device) in some containers, which must be an error.
	dev, err := DeviceOf("/")
	if err != nil {
		if !strings.Contains(err.Error(), "not on a block device") {
			t.Fatalf("DeviceOf(/): %v", err)
		}
		return
	}
	if !strings.HasPrefix(dev.Path, "/dev/") {
		t.Errorf("device path %q", dev.Path)
	}
	if size, err := dev.Size(); err != nil || size == 0 {
		t.Errorf("size of %s: %d, %v", dev.Path, size, err)
	}
}

// table returns an MBR with partitions given as {type, first sector, sectors}.
func table(parts ...[3]uint32) []byte {
	b := make([]byte, 512)
	for i, p := range parts {
		e := b[446+16*i:]
		e[4] = byte(p[0])
		binary.LittleEndian.PutUint32(e[8:], p[1])
		binary.LittleEndian.PutUint32(e[12:], p[2])
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

func TestGrowLastPartition(t *testing.T) {
	for _, tc := range []struct {
		name        string
		table       []byte
		number      int
		diskSectors uint64
		want        uint64
		wantErr     string
	}{
		{"last partition fills the disk", table([3]uint32{0x83, 2048, 1000}), 1, 10000, 7952, ""},
		{"already full", table([3]uint32{0x83, 2048, 7952}), 1, 10000, 7952, ""},
		{"another partition follows", table([3]uint32{0x83, 2048, 1000}, [3]uint32{0x82, 4096, 100}), 1, 10000, 1000, ""},
		{"second partition is last", table([3]uint32{0x83, 2048, 1000}, [3]uint32{0x83, 4096, 100}), 2, 10000, 5904, ""},
		{"MBR's 2 TiB limit", table([3]uint32{0x83, 2048, 1000}), 1, 1 << 40, 1<<32 - 1 - 2048, ""},
		{"GPT", table([3]uint32{0xee, 1, 1000}), 1, 10000, 0, "GPT"},
		{"no table", make([]byte, 512), 1, 10000, 0, "no MBR"},
		{"logical partition", table([3]uint32{0x83, 2048, 1000}), 5, 10000, 0, "not a primary"},
	} {
		got, err := GrowLastPartition(tc.table, tc.number, tc.diskSectors)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		stored := uint64(binary.LittleEndian.Uint32(tc.table[446+16*(tc.number-1)+12:]))
		if err != nil || got != tc.want || stored != tc.want {
			t.Errorf("%s: got %d (table says %d), %v; want %d", tc.name, got, stored, err, tc.want)
		}
	}
}
