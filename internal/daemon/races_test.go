package daemon

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver/fake"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Each test here races two requests: the fake driver holds the first
// operation open at a known point while the second arrives.

// answerWithin sends a request and returns its answer, or reports that it
// blocked for longer than limit (its goroutine ends once the holder lets
// go, before the test's cleanup).
func (h *harness) answerWithin(limit time.Duration, method, path string, body any) (response, bool) {
	got := make(chan response, 1)
	go func() { got <- h.do(method, path, body) }()
	select {
	case r := <-got:
		return r, true
	case <-time.After(limit):
		h.t.Cleanup(func() { <-got })
		return response{}, false
	}
}

// A request that meets a guest held by a long operation (export,
// snapshot, copy) is refused at once with a busy error naming the
// operation, instead of waiting minutes for it.
func TestLongOperationMakesOtherRequestsBusyAtOnce(t *testing.T) {
	for _, long := range []struct {
		kind, method string // the operation's kind, the fake method it is held in
		begin        func(h *harness) api.Operation
	}{
		{"export", "ReadRootTree", func(h *harness) api.Operation {
			return h.begin(http.MethodPost, "/guests/web/export", api.Export{Format: "tar", Path: filepath.Join(h.t.TempDir(), "web.tar")})
		}},
		{"snapshot-create", "CreateSnapshot", func(h *harness) api.Operation {
			return h.begin(http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s2"})
		}},
		{"snapshot-restore", "RestoreSnapshot", func(h *harness) api.Operation {
			return h.begin(http.MethodPost, "/guests/web/snapshots/s1/restore", nil)
		}},
		{"copy", "Copy", func(h *harness) api.Operation {
			return h.begin(http.MethodPost, "/guests/web/copy", api.GuestCopy{Name: "web2"})
		}},
	} {
		t.Run(long.kind, func(t *testing.T) {
			h := newHarness(t)
			h.create("web", false)
			h.mustRun(http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s1"})
			gate := h.fake.Hold(long.method)
			defer gate.Release()
			op := long.begin(h)
			<-gate.Entered()
			for _, req := range []struct {
				method, path string
				body         any
			}{
				{http.MethodPut, "/guests/web/state", api.StateChange{Action: "start"}},
				{http.MethodDelete, "/guests/web?force=1", nil},
				{http.MethodPatch, "/guests/web/config", api.ConfigChange{Set: map[string]string{"cpus": "2"}}},
				{http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s3"}},
				{http.MethodDelete, "/guests/web/snapshots/s1", nil},
				{http.MethodPost, "/guests/web/export", api.Export{Format: "tar", Path: filepath.Join(t.TempDir(), "other.tar")}},
				{http.MethodPost, "/guests/web/copy", api.GuestCopy{Name: "web3"}},
			} {
				r, answered := h.answerWithin(2*time.Second, req.method, req.path, req.body)
				want := "guest web is busy: " + long.kind + " in progress (operation " + op.ID + "); wait for it or try again"
				switch {
				case !answered:
					t.Errorf("%s %s blocked behind the %s", req.method, req.path, long.kind)
				case r.status != http.StatusConflict || r.err().Kind != "busy" || r.err().Error != want:
					t.Errorf("%s %s during a %s: %s, want 409 %q", req.method, req.path, long.kind, r, want)
				}
			}
			gate.Release()
			if done := h.wait(op); done.Error != "" {
				t.Errorf("the %s failed: %s", long.kind, done.Error)
			}
			// Once it is over the guest takes requests again.
			h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "start"})
		})
	}
}

// Short lifecycle operations still wait for each other, in turn: a stop
// sent while a start runs is done after it.
func TestLifecycleOperationsQueue(t *testing.T) {
	h := newHarness(t)
	h.create("web", false)
	gate := h.fake.Hold("Start")
	start := h.begin(http.MethodPut, "/guests/web/state", api.StateChange{Action: "start"})
	<-gate.Entered()
	stop := h.begin(http.MethodPut, "/guests/web/state", api.StateChange{Action: "stop"})
	gate.Release()
	if done := h.wait(start); done.Error != "" {
		t.Fatalf("start: %s", done.Error)
	}
	if done := h.wait(stop); done.Error != "" {
		t.Fatalf("stop queued behind the start: %s", done.Error)
	}
	if s := h.state("web"); s != api.StateStopped {
		t.Errorf("guest is %s, want stopped", s)
	}
}

// An operation that waited for a guest deleted meanwhile fails with not
// found, and writes nothing where the guest was.
func TestOperationQueuedBehindADeleteFindsTheGuestGone(t *testing.T) {
	h := newHarness(t)
	h.create("web", false)
	gate := h.fake.Hold("Delete")
	del := h.begin(http.MethodDelete, "/guests/web", nil)
	<-gate.Entered()
	start := h.begin(http.MethodPut, "/guests/web/state", api.StateChange{Action: "start"})
	config := make(chan response, 1)
	go func() {
		config <- h.do(http.MethodPatch, "/guests/web/config", api.ConfigChange{Set: map[string]string{"cpus": "2"}})
	}()
	time.Sleep(100 * time.Millisecond) // both wait for the delete
	gate.Release()
	if done := h.wait(del); done.Error != "" {
		t.Fatalf("delete: %s", done.Error)
	}
	done := h.wait(start)
	if done.ErrorKind != "not-found" || !strings.Contains(done.Error, "deleted meanwhile") {
		t.Errorf("start queued behind the delete: %q (%s), want not found: deleted meanwhile", done.Error, done.ErrorKind)
	}
	if r := <-config; r.status != http.StatusNotFound {
		t.Errorf("config set queued behind the delete: %s, want 404", r)
	}
	if left := h.leftovers(); len(left) > 0 {
		t.Errorf("the queued operations left %v", left)
	}
	if h.fake.Has("web") {
		t.Error("the driver holds the deleted guest again")
	}
}

// A template is deleted only if no guest uses it or is being created from
// it, checked under the lock a create takes: a create racing the delete
// either pins the template first or is refused.
func TestTemplateDeleteRacesACreate(t *testing.T) {
	h := newHarness(t)
	var create response
	h.faults.set("template-delete-checked", func() error {
		create = h.do(http.MethodPost, "/guests", api.GuestCreate{Name: "web", Template: testTemplate})
		return nil
	})
	del := h.do(http.MethodDelete, "/templates/"+testTemplate, nil)
	if create.status == http.StatusAccepted && del.status == http.StatusNoContent {
		t.Fatalf("both the create (%s) and the template delete (%s) went through: the guest has no template", create, del)
	}
	if create.status == http.StatusAccepted {
		var op api.Operation
		decode(t, create.body, &op)
		if done := h.wait(op); done.Error != "" {
			t.Errorf("the create that pinned the template failed: %s", done.Error)
		}
	}
	if del.status != http.StatusNoContent && del.err().Kind != "conflict" {
		t.Errorf("template delete: %s", del)
	}
	if create.status != http.StatusAccepted && create.err().Kind != "conflict" {
		t.Errorf("create: %s", create)
	}
}

// A network's users include guests still being created on it: deleting it
// meanwhile is refused, naming them.
func TestNetworkDeleteCountsGuestsBeingCreated(t *testing.T) {
	h := newHarness(t)
	gate := h.fake.Hold("Create")
	defer gate.Release()
	op := h.begin(http.MethodPost, "/guests", api.GuestCreate{Name: "web", Template: testTemplate, Networks: []string{"lab"}})
	<-gate.Entered()
	r := h.do(http.MethodDelete, "/networks/lab", nil)
	if r.status != http.StatusConflict || !strings.Contains(r.err().Error, "web") {
		t.Errorf("network delete while a guest is being created on it: %s, want 409 naming web", r)
	}
	gate.Release()
	h.wait(op)
}

var _ = fake.Name
