package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// testDaemon is a daemon with no drivers that is not served: handlers are
// called directly.
func testDaemon(t *testing.T) *Daemon {
	t.Helper()
	state := t.TempDir()
	// New wants the state dir's parents searchable, as containers need.
	if err := os.Chmod(filepath.Dir(state), 0o711); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{
		StateDir: state, Socket: filepath.Join(t.TempDir(), "api.sock"),
		Drivers: driver.NewRegistry(), Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.ctx = context.Background()
	t.Cleanup(d.ops.wg.Wait)
	return d
}

// brokenGuest writes a guest.yaml that does not load (an unknown key) and
// records the guest as broken, as reconcile does.
func brokenGuest(t *testing.T, d *Daemon, name string, status guest.Status) string {
	t.Helper()
	def := &guest.Definition{
		SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeContainer, Class: "container",
		Template: "busybox", CPUs: 1, Memory: 64 << 20, Processes: 10, Rootfs: guest.RootfsOverlay,
		Networks: []string{"polyvisor0"}, Status: status,
	}
	data, err := def.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := d.layout.GuestDir(name)
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, guest.FileName), append(data, "colour: blue\n"...), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = d.store.Load(name)
	if err == nil {
		t.Fatal("the edited definition loads")
	}
	d.guests.markBroken(name, err, 0)
	return dir
}

// deleteVia sends DELETE for name and, when it starts an operation, waits
// for it; it returns the HTTP status and the error the client would show.
func deleteVia(t *testing.T, d *Daemon, name string, force bool) (int, string) {
	t.Helper()
	target := api.Version + "/guests/" + name
	if force {
		target += "?force=1"
	}
	rec := httptest.NewRecorder()
	d.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, target, nil))
	if rec.Code != http.StatusAccepted {
		var e api.Error
		json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, e.Error
	}
	var op api.Operation
	if err := json.Unmarshal(rec.Body.Bytes(), &op); err != nil {
		t.Fatal(err)
	}
	done, err := d.ops.wait(context.Background(), op.ID, 10*time.Second)
	if err != nil || done.Status == api.OpRunning {
		t.Fatalf("delete operation: %+v, %v", done, err)
	}
	return rec.Code, done.Error
}

func listedBroken(d *Daemon, name string) bool {
	for _, g := range d.guests.brokenViews() {
		if g.Name == name && g.State == api.StateBroken {
			return true
		}
	}
	return false
}

func TestDeleteOfABrokenGuestNeedsForce(t *testing.T) {
	d := testDaemon(t)
	dir := brokenGuest(t, d, "web", guest.Status{State: api.StateStopped})
	code, msg := deleteVia(t, d, "web", false)
	if code != http.StatusBadRequest || !strings.Contains(msg, `unknown key "colour"`) || !strings.Contains(msg, "delete --force web") {
		t.Errorf("delete without --force: %d %q; want the reason and the way out", code, msg)
	}
	if _, err := os.Stat(dir); err != nil || !listedBroken(d, "web") {
		t.Errorf("a refused delete removed the guest: %v", err)
	}
}

func TestForcedDeleteRemovesABrokenGuest(t *testing.T) {
	d := testDaemon(t)
	dir := brokenGuest(t, d, "web", guest.Status{State: api.StateStopped})
	if code, msg := deleteVia(t, d, "web", true); msg != "" {
		t.Fatalf("delete --force: %d %q", code, msg)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the guest's directory survives: %v", err)
	}
	if entries, _ := os.ReadDir(d.layout.GuestsDir()); len(entries) != 0 {
		t.Errorf("the guests dir holds %v", entries)
	}
	if listedBroken(d, "web") {
		t.Error("the deleted guest is still listed")
	}
	if err := d.guests.reserve("web", "busybox", nil); err != nil {
		t.Errorf("the name is not free again: %v", err)
	}
}

// TestForcedDeleteRefusesWhileAProcessOfTheGuestLives covers the pid the
// definition recorded and a process found on the host by its run dir (a
// monitor's --dir, QEMU's sockets) when the record says nothing.
func TestForcedDeleteRefusesWhileAProcessOfTheGuestLives(t *testing.T) {
	d := testDaemon(t)
	init := sleeper(t)
	id, err := procutil.Identify(init.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := brokenGuest(t, d, "web", guest.Status{State: api.StateRunning, InitPID: id.PID, InitStart: id.Start})
	code, msg := deleteVia(t, d, "web", true)
	if code != http.StatusConflict || !strings.Contains(msg, "process "+strconv.Itoa(id.PID)+" still runs") {
		t.Errorf("delete --force of a guest whose init lives: %d %q", code, msg)
	}
	if _, err := os.Stat(dir); err != nil || !listedBroken(d, "web") {
		t.Errorf("the refused delete removed the guest: %v", err)
	}

	monitor := sleeper(t, filepath.Join(d.layout.GuestRunDir("db"), "qmp.sock"))
	brokenGuest(t, d, "db", guest.Status{State: api.StateStopped})
	code, msg = deleteVia(t, d, "db", true)
	if code != http.StatusConflict || !strings.Contains(msg, "process "+strconv.Itoa(monitor.Process.Pid)+" still runs") {
		t.Errorf("delete --force of a guest whose QEMU lives: %d %q", code, msg)
	}
	if !listedBroken(d, "db") {
		t.Error("the refused delete took db off the list")
	}
}

// sleeper starts a process that lives until the test ends, with args on
// its command line.
func sleeper(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", "sleep 60; :"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}
