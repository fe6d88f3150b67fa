package daemon

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/template"
)

// entry is one guest in the daemon's table. Lifecycle operations on it are
// serialized by op; readers (list, info) never wait for them: they load the
// current definition, which is replaced whole (copy on write) once saved.
type entry struct {
	op  sync.Mutex
	def atomic.Pointer[guest.Definition]
}

// table holds every guest the daemon knows, plus names being created.
type table struct {
	mu       sync.RWMutex
	guests   map[string]*entry
	reserved map[string]string // name of a guest being created -> its template's key
	// broken holds guests whose definition did not load at start, with why.
	broken map[string]error
	// idBases holds the id ranges (their first host id) of isolated guests
	// being created, and of broken guests, which keep theirs until removed.
	idBases map[string]uint32
}

func newTable() *table {
	return &table{guests: map[string]*entry{}, reserved: map[string]string{}, broken: map[string]error{}, idBases: map[string]uint32{}}
}

// allocateIDMap gives name, a reserved guest, the lowest isolated id range
// no other guest holds. Taking the range and recording it happen under one
// lock, so concurrent creates never share one; release frees it if the
// create fails, and a deleted guest's range is free once it leaves the table.
func (t *table) allocateIDMap(name string) (idmap.Map, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var used []uint32
	for _, e := range t.guests {
		if def := e.def.Load(); def.Isolated() {
			used = append(used, def.Security.IDMapBase)
		}
	}
	for _, base := range t.idBases {
		used = append(used, base)
	}
	m, err := idmap.IsolatedPool().Allocate(used)
	if err != nil {
		return m, fmt.Errorf("guest %s: %w: %w", name, api.ErrConflict, err)
	}
	t.idBases[name] = m.HostBase
	return m, nil
}

func (t *table) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.guests)
}

// get returns the named guest's entry.
func (t *table) get(name string) (*entry, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.guests[name]
	if err := t.broken[name]; err != nil {
		return nil, fmt.Errorf("guest %s is broken: %w (fix its guest.yaml, then restart the daemon; or remove it with 'polyvisor delete --force %s')", name, err, name)
	}
	if !ok {
		return nil, fmt.Errorf("guest %s: %w: see 'polyvisor list'", name, api.ErrNotFound)
	}
	return e, nil
}

// reserve claims a name for a guest being created from template.
func (t *table) reserve(name, template string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, taken := t.guests[name]
	if t.broken[name] != nil {
		taken = true
	}
	if _, creating := t.reserved[name]; taken || creating {
		return fmt.Errorf("guest %s: %w: pick another name or delete it first", name, api.ErrExists)
	}
	t.reserved[name] = template
	return nil
}

// release drops a reservation; with def, the guest joins the table.
func (t *table) release(name string, def *guest.Definition) *entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.reserved, name)
	if t.broken[name] == nil {
		delete(t.idBases, name)
	}
	if def == nil {
		return nil
	}
	e := &entry{}
	e.def.Store(def)
	t.guests[name] = e
	return e
}

// markBroken records a guest whose definition does not load, and the
// isolated id range it claims (0 for none), which no other guest gets.
func (t *table) markBroken(name string, err error, idBase uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.broken[name] = err
	if idBase != 0 {
		t.idBases[name] = idBase
	}
}

// brokenCause returns why the named guest is broken, or nil if it is not.
func (t *table) brokenCause(name string) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.broken[name]
}

// claimBroken takes a broken guest off the table for its removal: the name
// stays reserved, so neither a create nor a second delete can touch it
// meanwhile. It returns why the guest was broken (nil if it is not);
// putBack undoes it.
func (t *table) claimBroken(name string) (cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cause = t.broken[name]
	if cause != nil {
		delete(t.broken, name)
		t.reserved[name] = ""
	}
	return cause
}

// putBack returns a claimed broken guest to the table, as it was.
func (t *table) putBack(name string, cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.reserved, name)
	t.broken[name] = cause
}

// brokenViews describes the broken guests for list.
func (t *table) brokenViews() []api.Guest {
	t.mu.RLock()
	defer t.mu.RUnlock()
	views := make([]api.Guest, 0, len(t.broken))
	for name, err := range t.broken {
		views = append(views, api.Guest{Name: name, State: api.StateBroken, Error: err.Error(), IPv4: []string{}})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	return views
}

func (t *table) remove(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.guests, name)
}

// all returns the current definitions sorted by name.
func (t *table) all() []*guest.Definition {
	t.mu.RLock()
	defs := make([]*guest.Definition, 0, len(t.guests))
	for _, e := range t.guests {
		defs = append(defs, e.def.Load())
	}
	t.mu.RUnlock()
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	return defs
}

// usersOf lists the guests created, or being created, from the template
// with key.
func (t *table) usersOf(key string) []string {
	var users []string
	for _, def := range t.all() {
		if templateKey(def) == key {
			users = append(users, def.Name)
		}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for name, tmpl := range t.reserved {
		if tmpl == key {
			users = append(users, name)
		}
	}
	return users
}

// networkUsers lists the guests attached to a network.
func (t *table) networkUsers(network string) []string {
	var users []string
	for _, def := range t.all() {
		if slices.Contains(def.Networks, network) {
			users = append(users, def.Name)
		}
	}
	return users
}

// templateKey names the directory of the template a guest was made from.
func templateKey(def *guest.Definition) string {
	return template.Key(def.Template, def.Type, def.Arch)
}

// running checks liveness against the process itself, never the file.
func running(def *guest.Definition) bool {
	return def.Status.State == api.StateRunning &&
		procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}.Alive()
}
