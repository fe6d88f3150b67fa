package idmap

import (
	"fmt"
	"slices"
)

// Id map kinds a container guest's definition names (security.idmap).
const (
	// Isolated gives the guest a host range of its own, so no kernel quota
	// counted per host uid (processes, inotify instances, keys) is shared
	// with another guest.
	Isolated = "isolated"
	// Shared puts the guest in the range every template is shifted to,
	// with every other shared guest: polyvisor's model before isolated.
	Shared = "shared"
)

// Pool is the set of host ranges isolated guests take theirs from: Count
// ranges of Size ids, the first at First, each right after the last.
type Pool struct {
	First uint32
	Count uint32
}

// IsolatedPool is the pool of isolated guests: ranges from 1065536, right
// above the shared range, to below 2^31 (some tools still read uids as
// signed 32-bit numbers), 32751 guests in all.
func IsolatedPool() Pool {
	first := uint32(HostBase + Size)
	return Pool{First: first, Count: (1<<31 - first) / Size}
}

// Contains reports whether base is the first id of one of the pool's ranges.
func (p Pool) Contains(base uint32) bool {
	return base >= p.First && (base-p.First)%Size == 0 && (base-p.First)/Size < p.Count
}

// Allocate returns the map of the lowest range of the pool whose base is
// not in used (the bases live guests hold), so a deleted guest's range is
// the next one given out.
func (p Pool) Allocate(used []uint32) (Map, error) {
	for k := range p.Count {
		base := p.First + k*Size
		if !slices.Contains(used, base) {
			return Map{HostBase: base, Size: Size}, nil
		}
	}
	return Map{}, fmt.Errorf("every one of the %d isolated id ranges is taken: delete a guest, or create this one with --idmap shared", p.Count)
}

// Between returns a ShiftFunc that moves owners in from's range to the
// same place in to's. Other owners are kept: an overlay upper dir holds
// whiteouts that overlayfs made as host root.
func Between(from, to Map) ShiftFunc {
	move := func(id uint32) uint32 {
		if c, err := from.ToContainer(id); err == nil {
			if h, err := to.ToHost(c); err == nil {
				return h
			}
		}
		return id
	}
	return func(uid, gid uint32) (uint32, uint32, error) {
		return move(uid), move(gid), nil
	}
}
