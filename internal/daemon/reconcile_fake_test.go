package daemon

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A daemon started over the state of one that stopped adopts the guests
// still running (through the driver), releases those that ended while no
// daemon watched, and watches the adopted ones.
func TestRestartAdoptsRunningAndReleasesEndedGuests(t *testing.T) {
	h := newHarness(t)
	h.create("alive", true)
	h.create("ended", true)
	h.create("idle", false)
	h.stop()
	ended := h.definition("ended")
	h.fake.End(ended)
	h.start(nil)
	if got := h.fake.Calls("Recover"); got != 1 {
		t.Errorf("the driver recovered %d guests, want 1 (the one alive)", got)
	}
	if s := h.state("alive"); s != api.StateRunning {
		t.Errorf("alive guest is %s after the restart", s)
	}
	if def := h.definition("ended"); def.Status.State != api.StateStopped || def.Status.LastExit == nil {
		t.Errorf("ended guest: %+v, want released with its exit", def.Status)
	}
	if s := h.state("idle"); s != api.StateStopped {
		t.Errorf("idle guest is %s", s)
	}
	// The adopted guest is watched: when it ends, the new daemon notices.
	h.fake.End(h.definition("alive"))
	h.waitFor("the new daemon's watcher releases the adopted guest", func() bool {
		return h.definition("alive").Status.State == api.StateStopped
	})
}

// A guest whose handle the driver does not know is still adopted (its
// process lives) but the failure is the driver's to report; the daemon
// does not kill what it cannot re-attach to.
func TestRestartKeepsAGuestWhoseRecoveryFails(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	h.stop()
	def := h.definition("web")
	h.start(map[string]error{"Recover": errInjected})
	if !(procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}).Alive() {
		t.Fatal("the daemon killed a guest it could not re-attach to")
	}
	if s := h.state("web"); s != api.StateRunning {
		t.Errorf("guest is %s, want running", s)
	}
}

// Operations interrupted by the daemon's death (their intent recorded)
// are finished or rolled back by the next daemon.
func TestRestartFinishesInterruptedOperations(t *testing.T) {
	h := newHarness(t)
	h.create("starting", false)
	h.create("launching", false)
	h.create("stopping", true)
	h.create("deleting", false)
	h.create("snapping", false)
	h.mustRun(http.MethodPost, "/guests/snapping/snapshots", api.SnapshotCreate{Name: "s1"})
	h.stop()
	// What a daemon killed mid-operation leaves: the intent, and for a
	// start the process it had begun but not recorded.
	h.start(nil)
	for name, intent := range map[string]string{
		"starting": guest.IntentStart, "launching": guest.IntentLaunch, "stopping": guest.IntentStop,
		"deleting": guest.IntentDelete,
	} {
		e, err := h.d.guests.get(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.d.recordIntent(e, intent, ""); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := h.d.guests.get("snapping")
	if err := h.d.recordIntent(e, guest.IntentSnapshotDelete, "s1"); err != nil {
		t.Fatal(err)
	}
	startingDef := h.definition("starting")
	status, err := h.fake.Start(t.Context(), startingDef)
	if err != nil {
		t.Fatal(err)
	}
	orphan := procutil.Identity{PID: status.InitPID, Start: status.InitStart}
	h.restart()
	if orphan.Alive() {
		t.Error("the process of an interrupted start still runs")
	}
	if def := h.definition("starting"); def.Status.State != api.StateStopped || def.Status.Intent != "" {
		t.Errorf("interrupted start left %+v", def.Status)
	}
	if def := h.definition("stopping"); def.Status.State != api.StateStopped || def.Status.Intent != "" {
		t.Errorf("interrupted stop left %+v", def.Status)
	}
	for _, gone := range []string{"launching", "deleting"} {
		if s := h.state(gone); s != "" {
			t.Errorf("guest %s of an interrupted %s is still listed (%s)", gone, gone, s)
		}
		if _, err := os.Stat(filepath.Join(h.dir, "guests", gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("guest %s's directory remains: %v", gone, err)
		}
	}
	if def := h.definition("snapping"); def.Status.Intent != "" {
		t.Errorf("interrupted snapshot delete left %+v", def.Status)
	}
	if snaps := h.fake.Snapshots("snapping"); len(snaps) != 0 {
		t.Errorf("the interrupted snapshot delete left %v in the driver", snaps)
	}
}
