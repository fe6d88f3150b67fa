package guest

import (
	"fmt"
	"strings"

	"github.com/polyvisor/polyvisor/pkg/api"
	"golang.org/x/sys/unix"
)

// The checks below are shared by the CLI's flags, the API's create request
// and config set, so that each refuses a bad value with the same words.
// field is the value's name as the user wrote it: "--cpus" on the command
// line, "cpus" in a request or a KEY=VALUE.

// CheckCPUs refuses a CPU count outside 1..MaxCPUs.
func CheckCPUs(field string, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: %s %d: give at least 1 CPU", api.ErrInvalid, field, n)
	}
	if n > MaxCPUs {
		return fmt.Errorf("%w: %s %d: give at most %d CPUs", api.ErrInvalid, field, n, MaxCPUs)
	}
	return nil
}

// CheckProcesses refuses a process limit below 1: zero would let the
// guest's init fork nothing.
func CheckProcesses(field string, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: %s %d: give at least 1 process, like 1024", api.ErrInvalid, field, n)
	}
	return nil
}

// CheckMemory refuses memory below what any guest boots with.
func CheckMemory(field string, m Size) error {
	if m < MinMemory {
		return fmt.Errorf("%w: %s %s: give at least %s, like 256MiB or 1GiB", api.ErrInvalid, field, m, MinMemory)
	}
	return nil
}

// CheckHostMemory refuses memory beyond the host's: a VM would be killed
// by the OOM killer mid-boot, and a container's limit would mean nothing.
// An administrator who means to overcommit says --force.
// It is checked when a value is asked for (create, config set), not when a
// definition loads, so a guest moved to a smaller host still loads.
func CheckHostMemory(field string, m Size) error {
	total, err := HostMemory()
	if err != nil {
		return nil // not knowing the host is no reason to refuse
	}
	if m > total {
		return fmt.Errorf("%w: %s %s: the host has %s in all; give at most that, or --force to overcommit", api.ErrInvalid, field, m, total>>20<<20)
	}
	return nil
}

// CheckDiskSize refuses a disk larger than MaxDiskSize.
func CheckDiskSize(field string, s Size) error {
	if s < 0 || s > MaxDiskSize {
		return fmt.Errorf("%w: %s %s: use at most %s", api.ErrInvalid, field, s, MaxDiskSize)
	}
	return nil
}

// DefaultDiskQuota is the disk quota of an overlay container when the
// create request gives none: room for a Debian system and its packages
// several times over, while the image it lives in takes on the host only
// what the guest writes (it is sparse).
const DefaultDiskQuota = Size(10 << 30)

// MinDiskQuota is the smallest disk quota: below it ext4's own journal and
// metadata leave a guest too little room.
const MinDiskQuota = Size(16 << 20)

// NoDiskQuota is what --disk takes for a container without a quota.
const NoDiskQuota = "none"

// ParseDiskQuota reads a disk quota as the user wrote it (field is "--disk"
// or "disk"): a size of MinDiskQuota to MaxDiskSize, rounded up to whole
// 4 KiB blocks, or "none", which gives 0: no quota.
func ParseDiskQuota(field, value string) (Size, error) {
	if strings.TrimSpace(value) == NoDiskQuota {
		return 0, nil
	}
	s, err := ParseSize(value)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v, or none for no quota", api.ErrInvalid, field, err)
	}
	if s < MinDiskQuota {
		return 0, fmt.Errorf("%w: %s %s: give at least %s, like 10GiB, or none for no quota", api.ErrInvalid, field, s, MinDiskQuota)
	}
	if err := CheckDiskSize(field, s); err != nil {
		return 0, err
	}
	return roundQuota(s), nil
}

// roundQuota rounds a quota up to whole 4 KiB file system blocks.
func roundQuota(s Size) Size { return (s + 4095) &^ 4095 }

// HostMemory is the host's physical memory (MemTotal).
func HostMemory() (Size, error) {
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return 0, fmt.Errorf("host memory: %w", err)
	}
	return Size(info.Totalram * uint64(info.Unit)), nil
}
