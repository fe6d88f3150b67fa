package guest

import (
	"errors"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestHostMemory(t *testing.T) {
	if m, err := HostMemory(); err != nil || m < MinMemory {
		t.Errorf("HostMemory = %s, %v", m, err)
	}
}

// TestParseDiskQuota: a quota is a size from 16MiB to 64TiB, rounded up to
// whole 4 KiB blocks, or none; anything else is one line naming the field
// and the fix.
func TestParseDiskQuota(t *testing.T) {
	for value, want := range map[string]Size{"64MiB": 64 << 20, "10GiB": 10 << 30, "20000001": 20_000_768, "none": 0, " none ": 0, "64TiB": 64 << 40} {
		if got, err := ParseDiskQuota("--disk", value); err != nil || got != want {
			t.Errorf("--disk %q = %d, %v; want %d", value, got, err, want)
		}
	}
	for value, want := range map[string]string{
		"0":       "--disk 0: give at least 16MiB, like 10GiB, or none for no quota",
		"15MiB":   "--disk 15MiB: give at least 16MiB",
		"-1GiB":   `--disk: "-1GiB" is not a size`,
		"-5":      `--disk: "-5" is not a size`,
		"65TiB":   "--disk 65TiB: use at most 64TiB",
		"lots":    `--disk: "lots" is not a size: write it like 512MiB, 2GiB or 1G, or none for no quota`,
		"":        "--disk: empty size",
		"unbound": `--disk: "unbound" is not a size`,
	} {
		_, err := ParseDiskQuota("--disk", value)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") || !errors.Is(err, api.ErrInvalid) {
			t.Errorf("--disk %q: err = %v, want one line saying %q", value, err, want)
		}
	}
}

// TestContainerQuotaOnlyGrows: config set disk=SIZE grows a container's
// quota image (rounded to blocks) and refuses to shrink it.
func TestContainerQuotaOnlyGrows(t *testing.T) {
	d := &Definition{Type: TypeContainer, Name: "web-1", Disks: []Disk{{Name: "root", Path: "disks/layer.img", Kind: DiskOverlayImage, Size: 64 << 20}}}
	d.SchemaVersion, d.Template, d.CPUs, d.Memory, d.Processes, d.Rootfs = SchemaVersion, "busybox", 1, 64<<20, 10, RootfsOverlay
	if err := d.Set("disk", "100000001"); err != nil {
		t.Fatal(err)
	}
	if disk, _ := d.Disk("root"); disk.Size != 100_003_840 {
		t.Errorf("quota after disk=100000001: %d", disk.Size)
	}
	if err := d.Set("disk", "32MiB"); err == nil || !strings.Contains(err.Error(), "disks only grow") || strings.Contains(err.Error(), "\n") {
		t.Errorf("shrinking: %v", err)
	}
}
