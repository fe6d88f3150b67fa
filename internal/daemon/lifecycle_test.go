package daemon

import (
	"net/http"
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
