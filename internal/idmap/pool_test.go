package idmap

import (
	"strings"
	"sync"
	"testing"
)

func TestIsolatedPoolStartsAboveTheSharedRangeAndStaysBelow2To31(t *testing.T) {
	p := IsolatedPool()
	if p.First != HostBase+Size {
		t.Errorf("first base %d, want %d (right above the shared range)", p.First, HostBase+Size)
	}
	last := uint64(p.First) + uint64(p.Count)*Size - 1
	if last >= 1<<31 {
		t.Errorf("last id %d is not below 2^31", last)
	}
	if p.Contains(HostBase) || p.Contains(p.First+1) || p.Contains(p.First+p.Count*Size) || !p.Contains(p.First+Size) {
		t.Error("Contains accepts a base outside the pool or refuses one in it")
	}
}

func TestAllocateGivesTheLowestFreeRangeAndReusesADeletedOne(t *testing.T) {
	p := Pool{First: 2000000, Count: 4}
	var used []uint32
	for k := range uint32(3) {
		m, err := p.Allocate(used)
		if err != nil {
			t.Fatal(err)
		}
		if want := p.First + k*Size; m.HostBase != want || m.Size != Size {
			t.Fatalf("allocation %d: %+v, want base %d", k, m, want)
		}
		used = append(used, m.HostBase)
	}
	// The second guest is deleted: its range is the next one given out.
	used = []uint32{used[0], used[2]}
	m, err := p.Allocate(used)
	if err != nil || m.HostBase != p.First+Size {
		t.Fatalf("after a delete: %+v, %v; want base %d", m, err, p.First+Size)
	}
}

func TestAllocateRefusesWhenEveryRangeIsTaken(t *testing.T) {
	p := Pool{First: 2000000, Count: 2}
	_, err := p.Allocate([]uint32{p.First, p.First + Size})
	if err == nil {
		t.Fatal("a full pool allocated a range")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "--idmap shared") {
		t.Errorf("error %q: want one line naming the way out", msg)
	}
}

// TestAllocateUnderALockNeverSharesARange is the pattern the daemon uses:
// allocation and recording the base under one lock.
func TestAllocateUnderALockNeverSharesARange(t *testing.T) {
	p := IsolatedPool()
	var (
		mu   sync.Mutex
		used []uint32
		wg   sync.WaitGroup
	)
	for range 64 {
		wg.Go(func() {
			mu.Lock()
			defer mu.Unlock()
			m, err := p.Allocate(used)
			if err != nil {
				t.Error(err)
				return
			}
			used = append(used, m.HostBase)
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, b := range used {
		if seen[b] {
			t.Fatalf("base %d given twice", b)
		}
		seen[b] = true
	}
	if len(seen) != 64 {
		t.Fatalf("%d ranges for 64 guests", len(seen))
	}
}

func TestBetweenMovesOwnersOfOneRangeToAnotherAndKeepsTheRest(t *testing.T) {
	from, to := Default(), Map{HostBase: 1065536, Size: Size}
	shift := Between(from, to)
	for _, c := range []struct{ in, want uint32 }{
		{HostBase, 1065536}, {HostBase + 1000, 1066536}, {HostBase + Size - 1, 1065536 + Size - 1},
		{0, 0}, // a whiteout made by overlayfs as host root
		{HostBase + Size, HostBase + Size},
	} {
		uid, gid, err := shift(c.in, c.in)
		if err != nil || uid != c.want || gid != c.want {
			t.Errorf("shift(%d) = %d, %d, %v; want %d", c.in, uid, gid, err, c.want)
		}
	}
}
