package qemu

import (
	"context"
	"fmt"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// usageTimeout bounds the QMP exchange of a usage read: a scrape does not
// wait behind an operation that holds the VM's monitor.
const usageTimeout = 2 * time.Second

// Usage is a running VM's: its cgroup's CPU time and memory (QEMU's own
// included), its taps' bytes, and what the guest read and wrote through
// its disks (QMP's query-blockstats). An unconfined VM (benchmarks'
// baseline) has no cgroup, and no usage.
func (d *Driver) Usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, error) {
	u, err := driver.CgroupUsage(d.cgroupPath(def), def)
	if err != nil {
		return u, err
	}
	ctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return u, fmt.Errorf("usage of %s: %w", def.Name, err)
	}
	defer m.Close()
	var stats []qmp.BlockStats
	if err := m.Run(ctx, qmp.QueryBlockstats{}, &stats); err != nil {
		return u, fmt.Errorf("usage of %s: %w", def.Name, err)
	}
	for _, s := range stats {
		u.DiskReadBytes += s.Stats.ReadBytes
		u.DiskWriteBytes += s.Stats.WriteBytes
	}
	return u, nil
}
