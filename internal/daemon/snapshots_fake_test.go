package daemon

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func (h *harness) snapshotNames(name string) []string {
	h.t.Helper()
	r := h.do(http.MethodGet, "/guests/"+name+"/snapshots", nil)
	var list []api.Snapshot
	if err := json.Unmarshal(r.body, &list); err != nil {
		h.t.Fatalf("snapshots of %s: %s", name, r)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	return names
}

// A snapshot taken, restored and deleted through the API: the guest's
// files come back as they were, a running guest is not restored, and a
// deleted snapshot is gone from the daemon and the driver.
func TestSnapshotCreateRestoreDelete(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	h.fake.WriteFile("web", "/etc/motd", "before")
	h.mustRun(http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s1"})
	if names := h.snapshotNames("web"); len(names) != 1 || names[0] != "s1" {
		t.Fatalf("snapshots %v, want s1", names)
	}
	if r := h.do(http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s1"}); r.status != http.StatusConflict {
		t.Errorf("a second s1: %s, want 409", r)
	}
	h.fake.WriteFile("web", "/etc/motd", "after")
	if r := h.do(http.MethodPost, "/guests/web/snapshots/s1/restore", nil); r.status != http.StatusConflict {
		t.Errorf("restore of a running guest: %s, want 409", r)
	}
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "stop"})
	h.mustRun(http.MethodPost, "/guests/web/snapshots/s1/restore", nil)
	if text, _ := h.fake.ReadFile("web", "/etc/motd"); text != "before" {
		t.Errorf("restored file says %q, want before", text)
	}
	h.mustRun(http.MethodDelete, "/guests/web/snapshots/s1", nil)
	if names := h.snapshotNames("web"); len(names) != 0 {
		t.Errorf("snapshots %v after delete", names)
	}
	if snaps := h.fake.Snapshots("web"); len(snaps) != 0 {
		t.Errorf("driver keeps %v", snaps)
	}
	if def := h.definition("web"); def.Status.Intent != "" {
		t.Errorf("intent %q left", def.Status.Intent)
	}
}

// A snapshot that fails at any step leaves nothing: no directory, no
// staging leftover, nothing in the driver, no intent.
func TestFailedSnapshotLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(h *harness)
	}{
		{"driver", func(h *harness) { h.fake.SetFail("CreateSnapshot", errInjected) }},
		{"after the disks", func(h *harness) {
			h.faults.set("snapshot-after-disks", func() error { return errInjected })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.create("web", false)
			tc.fail(h)
			if msg := h.run(http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s1"}); !strings.Contains(msg, errInjected.Error()) {
				t.Fatalf("snapshot: %q, want the injected failure", msg)
			}
			entries, _ := os.ReadDir(filepath.Join(h.dir, "guests", "web", "snapshots"))
			if len(entries) > 0 {
				t.Errorf("failed snapshot left %v", entries)
			}
			if snaps := h.fake.Snapshots("web"); len(snaps) != 0 {
				t.Errorf("failed snapshot left %v in the driver", snaps)
			}
			if def := h.definition("web"); def.Status.Intent != "" {
				t.Errorf("failed snapshot left intent %q", def.Status.Intent)
			}
		})
	}
}

// A restore the driver fails leaves the guest as it was, without intent;
// a delete the driver fails keeps the snapshot.
func TestFailedRestoreAndDeleteKeepTheSnapshot(t *testing.T) {
	h := newHarness(t)
	h.create("web", false)
	h.fake.WriteFile("web", "/f", "one")
	h.mustRun(http.MethodPost, "/guests/web/snapshots", api.SnapshotCreate{Name: "s1"})
	h.fake.WriteFile("web", "/f", "two")
	h.fake.SetFail("RestoreSnapshot", errInjected)
	if msg := h.run(http.MethodPost, "/guests/web/snapshots/s1/restore", nil); !strings.Contains(msg, errInjected.Error()) {
		t.Errorf("restore: %q", msg)
	}
	if text, _ := h.fake.ReadFile("web", "/f"); text != "two" {
		t.Errorf("failed restore changed the file to %q", text)
	}
	h.fake.SetFail("DeleteSnapshot", errInjected)
	if msg := h.run(http.MethodDelete, "/guests/web/snapshots/s1", nil); !strings.Contains(msg, errInjected.Error()) {
		t.Errorf("delete: %q", msg)
	}
	if names := h.snapshotNames("web"); len(names) != 1 {
		t.Errorf("snapshots %v after a failed delete, want s1", names)
	}
	if def := h.definition("web"); def.Status.Intent != "" {
		t.Errorf("intent %q left", def.Status.Intent)
	}
}

// A copy is a guest of its own with the source's files; a failed copy
// leaves nothing and frees the name.
func TestCopyAndAFailedCopy(t *testing.T) {
	h := newHarness(t)
	h.create("web", false)
	h.fake.WriteFile("web", "/f", "source")
	h.fake.SetFail("Copy", errInjected)
	if msg := h.run(http.MethodPost, "/guests/web/copy", api.GuestCopy{Name: "web2"}); !strings.Contains(msg, errInjected.Error()) {
		t.Fatalf("copy: %q, want the injected failure", msg)
	}
	if left := h.leftovers("web"); len(left) > 0 {
		t.Errorf("failed copy left %v", left)
	}
	h.fake.SetFail("Copy", nil)
	h.mustRun(http.MethodPost, "/guests/web/copy", api.GuestCopy{Name: "web2"})
	if text, _ := h.fake.ReadFile("web2", "/f"); text != "source" {
		t.Errorf("the copy's file says %q", text)
	}
	h.mustRun(http.MethodPut, "/guests/web2/state", api.StateChange{Action: "start"})
	if s := h.state("web"); s != api.StateStopped {
		t.Errorf("the source is %s", s)
	}
}
