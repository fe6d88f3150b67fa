package bench

import (
	"errors"
	"fmt"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// rawCgroupParent holds the cgroups of raw runc containers, apart from any
// daemon's.
const rawCgroupParent = "/pv-bench-raw"

// prepareRaw makes the bundle and mounts the overlay rootfs of a raw
// container, a copy of a polyvisor guest's spec: the peer that polyvisor's
// launch latency is compared with. None of this is timed, as the peer of
// polyvisor's launch is runc run alone.
func prepareRaw(rawDir string, spec *specs.Spec, lower, id string) (*peer.Runc, error) {
	return peer.PrepareRunc(rawDir, spec, lower, id, rawCgroupParent)
}

// sweepRaw removes whatever raw containers an interrupted or failed run
// left in rawDir, then the raw cgroup parent.
func sweepRaw(rawDir string) error { return peer.SweepRunc(rawDir, rawCgroupParent) }

// unmountUnder lazily detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	points, err := fsutil.MountsUnder(dir)
	if err != nil {
		return err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
