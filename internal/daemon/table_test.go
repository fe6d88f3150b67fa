package daemon

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestTableReservesNamesAndPinsTemplates(t *testing.T) {
	tb := newTable()
	if err := tb.reserve("web", "busybox", nil); err != nil {
		t.Fatal(err)
	}
	if err := tb.reserve("web", "debian", nil); !errors.Is(err, api.ErrExists) {
		t.Errorf("second reservation: %v", err)
	}
	// A guest still being created already pins its template.
	if users := tb.usersOf("busybox"); len(users) != 1 || users[0] != "web" {
		t.Errorf("users of busybox while creating: %v", users)
	}
	tb.release("web", &guest.Definition{Name: "web", Template: "busybox"})
	if users := tb.usersOf("busybox"); len(users) != 1 {
		t.Errorf("users of busybox after creation: %v", users)
	}
	if _, err := tb.get("web"); err != nil {
		t.Error(err)
	}
	tb.release("db", nil) // a failed creation
	tb.remove("web")
	if users := tb.usersOf("busybox"); len(users) != 0 {
		t.Errorf("users after delete: %v", users)
	}
	if _, err := tb.get("web"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("get after remove: %v", err)
	}
}

// isolatedDef is the definition of an isolated container holding base.
func isolatedDef(name string, base uint32) *guest.Definition {
	return &guest.Definition{Name: name, Type: guest.TypeContainer, Security: guest.Security{IDMap: idmap.Isolated, IDMapBase: base}}
}

func TestTableGivesConcurrentCreatesDisjointIDRanges(t *testing.T) {
	tb := newTable()
	first := idmap.IsolatedPool().First
	tb.release("old", isolatedDef("old", first)) // a guest already there
	tb.markBroken("broken", errors.New("bad yaml"), first+idmap.Size)
	const n = 32
	bases := make(chan uint32, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("g%d", i)
			if err := tb.reserve(name, "busybox", nil); err != nil {
				t.Error(err)
				return
			}
			m, err := tb.allocateIDMap(name)
			if err != nil {
				t.Error(err)
				return
			}
			bases <- m.HostBase
			tb.release(name, isolatedDef(name, m.HostBase))
		})
	}
	wg.Wait()
	close(bases)
	seen := map[uint32]bool{first: true, first + idmap.Size: true}
	for b := range bases {
		if seen[b] {
			t.Fatalf("range %d given twice (or one a live or broken guest holds)", b)
		}
		seen[b] = true
	}
	if len(seen) != n+2 {
		t.Fatalf("%d ranges for %d guests", len(seen)-2, n)
	}
}

func TestTableFreesARangeOnDeleteAndOnAFailedCreate(t *testing.T) {
	tb := newTable()
	first := idmap.IsolatedPool().First
	must := func(name string) uint32 {
		t.Helper()
		if err := tb.reserve(name, "busybox", nil); err != nil {
			t.Fatal(err)
		}
		m, err := tb.allocateIDMap(name)
		if err != nil {
			t.Fatal(err)
		}
		return m.HostBase
	}
	a := must("a")
	tb.release("a", isolatedDef("a", a))
	b := must("b")
	tb.release("b", nil) // its create failed: the range is free again
	if c := must("c"); c != b || b != first+idmap.Size || a != first {
		t.Errorf("ranges a %d, b %d, c %d; want %d, %d, %d", a, b, c, first, first+idmap.Size, first+idmap.Size)
	}
	tb.release("c", isolatedDef("c", b))
	tb.remove("a") // deleted
	if d := must("d"); d != first {
		t.Errorf("after a's delete the next range is %d, want a's %d", d, first)
	}
}
