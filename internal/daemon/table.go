package daemon

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// entry is one guest in the daemon's table. Operations that change the
// guest take it in turn (see lock.go); readers (list, info) never wait for
// them: they load the current definition, which is replaced whole (copy on
// write) once saved.
type entry struct {
	def atomic.Pointer[guest.Definition]

	mu sync.Mutex
	// turn is signalled when held or long changes.
	turn sync.Cond
	// held says an operation has the guest.
	held bool
	// long is the long operation (export, snapshot, copy) that has the
	// guest or waits for it: other requests are refused meanwhile.
	long *longOp

	// releases counts the operations that had the guest and gave it back:
	// any of them may have changed its disks.
	releases atomic.Uint64
	// listed is the guest's view as a listing last made it (see listView).
	listed atomic.Pointer[listedView]
}

// listedView is a stopped guest's view, with what it was made of.
type listedView struct {
	def      *guest.Definition
	releases uint64
	encoded  encodedView
}

// longOp names a long operation, for the busy error.
type longOp struct{ kind, id string }

func newEntry(def *guest.Definition) *entry {
	e := &entry{}
	e.turn.L = &e.mu
	e.def.Store(def)
	return e
}

// reservation is a guest being created: the template it is made from and
// the networks it joins, which cannot be deleted meanwhile.
type reservation struct {
	template string
	networks []string
}

// table holds every guest the daemon knows, plus names being created.
type table struct {
	mu       sync.RWMutex
	guests   map[string]*entry
	reserved map[string]reservation // guests being created, by name
	// deleting holds the templates (by key) and networks being deleted,
	// which no new guest may reserve.
	deletingTemplates map[string]bool
	deletingNetworks  map[string]bool
	// broken holds guests whose definition did not load at start, with why.
	broken map[string]error
	// idBases holds the id ranges (their first host id) of isolated guests
	// being created, and of broken guests, which keep theirs until removed.
	idBases map[string]uint32
}

func newTable() *table {
	return &table{
		guests: map[string]*entry{}, reserved: map[string]reservation{}, broken: map[string]error{}, idBases: map[string]uint32{},
		deletingTemplates: map[string]bool{}, deletingNetworks: map[string]bool{},
	}
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

// reserve claims a name for a guest being created from template, joining
// networks; neither can be deleted until the reservation is released.
func (t *table) reserve(name, template string, networks []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, taken := t.guests[name]
	if t.broken[name] != nil {
		taken = true
	}
	if _, creating := t.reserved[name]; taken || creating {
		return fmt.Errorf("guest %s: %w: pick another name or delete it first", name, api.ErrExists)
	}
	if t.deletingTemplates[template] {
		return fmt.Errorf("template %s: %w: it is being deleted; build it again or pick another", template, api.ErrConflict)
	}
	for _, n := range networks {
		if t.deletingNetworks[n] {
			return fmt.Errorf("network %s: %w: it is being deleted; create it again or pick another", n, api.ErrConflict)
		}
	}
	t.reserved[name] = reservation{template: template, networks: slices.Clone(networks)}
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
	e := newEntry(def)
	t.guests[name] = e
	return e
}

// releaseHeld is release for a created guest that an operation of its
// creator goes on with (a launch's start): it joins the table held, so
// that no other request comes first. The caller releases it.
func (t *table) releaseHeld(name string, def *guest.Definition) *entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.reserved, name)
	if t.broken[name] == nil {
		delete(t.idBases, name)
	}
	e := newEntry(def)
	e.held = true
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
		t.reserved[name] = reservation{}
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

// entries returns the current guests sorted by name.
func (t *table) entries() []*entry {
	t.mu.RLock()
	entries := make([]*entry, 0, len(t.guests))
	for _, e := range t.guests {
		entries = append(entries, e)
	}
	t.mu.RUnlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].def.Load().Name < entries[j].def.Load().Name })
	return entries
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
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.usersOfLocked(key)
}

// usersOfLocked is usersOf; t.mu is held.
func (t *table) usersOfLocked(key string) []string {
	var users []string
	for name, e := range t.guests {
		if templateKey(e.def.Load()) == key {
			users = append(users, name)
		}
	}
	for name, r := range t.reserved {
		if r.template == key {
			users = append(users, name)
		}
	}
	sort.Strings(users)
	return users
}

// networkUsersLocked lists the guests attached to a network, or being created
// on it; t.mu is held.
func (t *table) networkUsersLocked(network string) []string {
	var users []string
	for name, e := range t.guests {
		if slices.Contains(e.def.Load().Networks, network) {
			users = append(users, name)
		}
	}
	for name, r := range t.reserved {
		if slices.Contains(r.networks, network) {
			users = append(users, name)
		}
	}
	sort.Strings(users)
	return users
}

// claimTemplate marks the template with key as being deleted, if no guest
// uses it or is being created from it: checked and marked under the lock
// a create's reservation takes, so that no create slips in between.
// unclaimTemplate ends it.
func (t *table) claimTemplate(key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if users := t.usersOfLocked(key); len(users) > 0 {
		return fmt.Errorf("%w: template %s is used by %s; delete them first", api.ErrConflict, key, strings.Join(users, ", "))
	}
	if t.deletingTemplates[key] {
		return fmt.Errorf("%w: template %s is being deleted already", api.ErrConflict, key)
	}
	t.deletingTemplates[key] = true
	return nil
}

func (t *table) unclaimTemplate(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.deletingTemplates, key)
}

// claimNetwork is claimTemplate for a network: no guest may be on it or
// being created on it.
func (t *table) claimNetwork(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if users := t.networkUsersLocked(name); len(users) > 0 {
		return fmt.Errorf("%w: network %s is used by %s: delete them or move them to another network first", api.ErrConflict, name, strings.Join(users, ", "))
	}
	if t.deletingNetworks[name] {
		return fmt.Errorf("%w: network %s is being deleted already", api.ErrConflict, name)
	}
	t.deletingNetworks[name] = true
	return nil
}

func (t *table) unclaimNetwork(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.deletingNetworks, name)
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
