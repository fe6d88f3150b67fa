package daemon

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A guest created, started, stopped, restarted and deleted through the API
// runs a real process while it runs, and leaves nothing once deleted.
func TestLifecycleThroughTheAPI(t *testing.T) {
	h := newHarness(t)
	h.create("web", false)
	if s := h.state("web"); s != api.StateStopped {
		t.Fatalf("created guest is %q, want stopped", s)
	}
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "start"})
	g, _ := h.guest("web")
	if g.State != api.StateRunning || g.PID == 0 {
		t.Fatalf("started guest: %+v", g)
	}
	first := g.PID
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "restart"})
	if g, _ = h.guest("web"); g.State != api.StateRunning || g.PID == first {
		t.Fatalf("restarted guest: state %s pid %d (was %d)", g.State, g.PID, first)
	}
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "stop"})
	if g, _ = h.guest("web"); g.State != api.StateStopped || g.LastExit == nil {
		t.Fatalf("stopped guest: %+v", g)
	}
	if msg := h.run(http.MethodPut, "/guests/web/state", api.StateChange{Action: "stop"}); !strings.Contains(msg, "not running") {
		t.Errorf("stop of a stopped guest: %q, want not running", msg)
	}
	h.mustRun(http.MethodDelete, "/guests/web", nil)
	if s := h.state("web"); s != "" {
		t.Errorf("deleted guest still listed as %s", s)
	}
	if left := h.leftovers(); len(left) > 0 {
		t.Errorf("delete left %v in the guests dir", left)
	}
	if h.fake.Has("web") {
		t.Error("the driver still holds the deleted guest")
	}
}

// A guest that ends on its own (a poweroff inside) is released by its
// watcher, with how it ended.
func TestWatcherReleasesAGuestThatEnds(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	h.fake.End(h.definition("web"))
	// The view says stopped as soon as the process is gone; the watcher
	// then records it.
	h.waitFor("the watcher releases the guest", func() bool { return h.definition("web").Status.State == api.StateStopped })
	def := h.definition("web")
	if def.Status.LastExit == nil || def.Status.LastExit.Signal != 9 {
		t.Errorf("last exit %+v, want the kill that ended it (%+v)", def.Status.LastExit, def.Status)
	}
}

// A create or launch that fails at any step leaves nothing: no directory,
// no staging leftover, no table entry, no driver state; the name is free.
func TestFailedCreationLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start bool
		fail  func(h *harness)
	}{
		{"driver create", false, func(h *harness) { h.fake.SetFail("Create", errInjected) }},
		{"fault after disks", false, func(h *harness) {
			h.faults.set("create-after-disks", func() error { return errInjected })
		}},
		{"saving the definition", false, func(h *harness) {
			h.store.setFailSave(func(string, *guest.Definition) error { return errInjected })
		}},
		{"driver start of a launch", true, func(h *harness) { h.fake.SetFail("Start", errInjected) }},
		{"recording a launch's start", true, func(h *harness) {
			h.faults.set("start-after-boot", func() error { return errInjected })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.fail(h)
			msg := h.run(http.MethodPost, "/guests", api.GuestCreate{Name: "web", Template: testTemplate, Start: tc.start})
			if !strings.Contains(msg, errInjected.Error()) {
				t.Fatalf("create: %q, want the injected failure", msg)
			}
			if left := h.leftovers(); len(left) > 0 {
				t.Errorf("failed create left %v", left)
			}
			if s := h.state("web"); s != "" {
				t.Errorf("failed create left the guest listed as %s", s)
			}
			if h.fake.Has("web") && tc.start {
				t.Error("a failed launch left the guest in the driver")
			}
			h.fake.SetFail("Create", nil)
			h.fake.SetFail("Start", nil)
			h.faults.set("create-after-disks", nil)
			h.faults.set("start-after-boot", nil)
			h.store.setFailSave(nil)
			h.create("web", true)
			if s := h.state("web"); s != api.StateRunning {
				t.Errorf("the name is not reusable: the second launch left it %s", s)
			}
		})
	}
}

// Errors reach the client with the status their sentinel maps to.
func TestErrorsMapToHTTPStatus(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		kind         string
	}{
		{http.MethodGet, "/guests/nope", nil, http.StatusNotFound, "not-found"},
		{http.MethodPost, "/guests", api.GuestCreate{Name: "web", Template: testTemplate}, http.StatusConflict, "exists"},
		{http.MethodPost, "/guests", api.GuestCreate{Name: "Bad_Name", Template: testTemplate}, http.StatusBadRequest, "invalid"},
		{http.MethodPost, "/guests", api.GuestCreate{Name: "x", Template: "missing"}, http.StatusNotFound, "not-found"},
		{http.MethodDelete, "/guests/web", nil, http.StatusConflict, "conflict"},
		{http.MethodPut, "/guests/web/state", api.StateChange{Action: "jump"}, http.StatusBadRequest, "invalid"},
		{http.MethodPatch, "/guests/web/config", api.ConfigChange{Set: map[string]string{"colour": "blue"}}, http.StatusBadRequest, "invalid"},
		{http.MethodDelete, "/templates/" + testTemplate, nil, http.StatusConflict, "conflict"},
		{http.MethodPost, "/guests/web/snapshots/nope/restore", nil, http.StatusNotFound, "not-found"},
	} {
		r := h.do(tc.method, tc.path, tc.body)
		if r.status != tc.status || r.err().Kind != tc.kind {
			t.Errorf("%s %s: %s, want %d %s", tc.method, tc.path, r, tc.status, tc.kind)
		}
	}
}

// The summary view lists every guest, broken ones included, with the
// table's fields as the whole view has them and nothing else; an unknown
// view is refused, naming the parameter.
func TestListSummaryView(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	h.create("db", false)
	brokenGuest(t, h.d, "bad", guest.Status{State: api.StateStopped})

	var whole []api.Guest
	var summaries []api.GuestSummary
	for _, list := range []struct {
		path string
		into any
	}{{"/guests", &whole}, {"/guests?view=full", &whole}, {"/guests?view=summary", &summaries}} {
		r := h.do(http.MethodGet, list.path, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %s", list.path, r)
		}
		if err := json.Unmarshal(r.body, list.into); err != nil {
			t.Fatal(err)
		}
		if list.into == &summaries && bytes.Contains(r.body, []byte(`"confinement"`)) {
			t.Errorf("GET %s sent fields the summary has none of: %s", list.path, r.body)
		}
	}
	if len(whole) != 3 || len(summaries) != len(whole) {
		t.Fatalf("listed %d whole and %d summaries, want 3 each", len(whole), len(summaries))
	}
	for i, g := range whole {
		if want := g.Summary(); !reflect.DeepEqual(summaries[i], want) {
			t.Errorf("summary %d: %+v, want %+v", i, summaries[i], want)
		}
	}
	if last := summaries[len(summaries)-1]; last.Name != "bad" || last.State != api.StateBroken || last.Error == "" {
		t.Errorf("the broken guest's summary: %+v", last)
	}

	r := h.do(http.MethodGet, "/guests?view=wide", nil)
	if r.status != http.StatusBadRequest || !strings.Contains(r.err().Error, `view "wide"`) {
		t.Errorf("GET /guests?view=wide: %s, want 400 naming the view", r)
	}
}

// A listing makes a stopped guest's view once and reuses it until the
// guest changes: a new definition, or an operation that had the guest
// (which may have written its disks) and gave it back. A running guest's
// view is made anew for each listing.
func TestListReusesStoppedViewsUntilTheGuestChanges(t *testing.T) {
	h := newHarness(t)
	h.create("db", false)
	h.create("web", true)
	allocated := func(name string) int64 {
		t.Helper()
		r := h.do(http.MethodGet, "/guests", nil)
		var guests []api.Guest
		if err := json.Unmarshal(r.body, &guests); err != nil {
			t.Fatalf("GET /guests: %s", r)
		}
		for _, g := range guests {
			if g.Name == name && len(g.Disks) == 1 {
				return g.Disks[0].Allocated
			}
		}
		t.Fatalf("%s or its disk is not listed: %s", name, r)
		return 0
	}
	grow := func(name string) {
		t.Helper()
		path := filepath.Join(h.d.layout.GuestDir(name), "disks", "root")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if allocated("db") != 0 || allocated("web") != 0 {
		t.Fatal("a new guest's disk is listed as allocated")
	}

	grow("web")
	if allocated("web") == 0 {
		t.Error("a running guest's listing did not show its disk's growth")
	}
	grow("db")
	if allocated("db") != 0 {
		t.Error("a stopped guest's view was made anew though nothing of polyvisor's changed it")
	}
	h.mustRun(http.MethodPost, "/guests/db/snapshots", api.SnapshotCreate{Name: "s1"})
	if allocated("db") == 0 {
		t.Error("after an operation on the stopped guest, its listing still shows the disk as before")
	}

	path := filepath.Join(h.d.layout.GuestDir("db"), "disks", "root")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if r := h.do(http.MethodPatch, "/guests/db/config", api.ConfigChange{Set: map[string]string{"cpus": "2"}}); r.status != http.StatusOK {
		t.Fatalf("PATCH /guests/db/config: %s", r)
	}
	if allocated("db") != 0 {
		t.Error("after a new definition, the stopped guest's listing still shows the disk as before")
	}
}
