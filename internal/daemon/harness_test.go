package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/fake"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The tests in this package that use a harness run the daemon's own logic
// against the fake driver: no root, no runtime, no network. The daemon is
// driven through its HTTP routes, the API being the contract.

// testTemplate is the template every harness has.
const testTemplate = "tmpl"

// harness is one daemon over a state dir, with a fake driver that outlives
// the daemon (its guests' processes are the host's), so that a test can
// restart the daemon over the same state.
type harness struct {
	t   testing.TB
	dir string
	// host is where the fake's guests live: it outlives each daemon and
	// its driver instance, as a real host does.
	host   *fake.Host
	fake   *fake.Driver
	store  *faultyStore
	d      *Daemon
	cancel context.CancelFunc
	faults *faults
}

// newHarness starts a daemon with a fake driver serving containers.
func newHarness(t testing.TB) *harness {
	t.Helper()
	state := t.TempDir()
	// New wants the state dir's parents searchable, as containers need.
	if err := os.Chmod(filepath.Dir(state), 0o711); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: state, faults: &faults{points: map[string]func() error{}}}
	h.host = fake.NewHost()
	t.Cleanup(h.host.Close)
	h.start(nil)
	t.Cleanup(h.stop)
	tmpl := &api.Template{ID: testTemplate, Name: testTemplate, Type: guest.TypeContainer, Source: "busybox", Arch: arch.Host().Debian}
	if err := h.d.templates.Add(tmpl, func(staging string) error {
		return os.Mkdir(filepath.Join(staging, "rootfs"), 0o755)
	}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) runDir(name string) string { return h.d.layout.GuestRunDir(name) }

// start makes a daemon, with a new fake driver (failing as fail says), over
// the harness's state and host, and reconciles, as Run does before it
// serves.
func (h *harness) start(fail map[string]error) {
	h.t.Helper()
	h.fake = fake.New(fake.Options{Type: guest.TypeContainer, RunDir: h.runDir, Host: h.host, Fail: fail})
	reg := driver.NewRegistry()
	reg.Register(h.fake)
	h.store = &faultyStore{FileStore: guest.FileStore{Dir: filepath.Join(h.dir, "guests")}}
	d, err := New(Config{
		StateDir: h.dir, Socket: filepath.Join(h.dir, "api.sock"), Drivers: reg,
		Log: slog.New(slog.DiscardHandler), DefaultNetwork: "none", Fault: h.faults.fault,
		Store: h.store,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.ctx, h.d, h.cancel = ctx, d, cancel
	if err := d.reconcile(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// stop ends the daemon as Run does when its context ends: its operations
// and watchers finish; guests keep running.
func (h *harness) stop() {
	h.cancel()
	h.d.ops.wg.Wait()
	h.d.watchers.Wait()
}

// restart stops the daemon and starts a new one over the same state.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start(nil)
}

// faults lets a test act at a named fault point of the daemon.
type faults struct {
	mu     sync.Mutex
	points map[string]func() error
}

func (f *faults) fault(point string) error {
	f.mu.Lock()
	fn := f.points[point]
	f.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn()
}

func (f *faults) set(point string, fn func() error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.points[point] = fn
}

// faultyStore is the daemon's file store with injectable failures: the
// daemon's transactions (staging dirs, renames, trash) stay on a real
// filesystem, and a save fails where a test says.
type faultyStore struct {
	guest.FileStore
	mu sync.Mutex
	// failSave, when set, is asked before each save.
	failSave func(dir string, def *guest.Definition) error
}

func (s *faultyStore) Save(dir string, def *guest.Definition) error {
	s.mu.Lock()
	fail := s.failSave
	s.mu.Unlock()
	if fail != nil {
		if err := fail(dir, def); err != nil {
			return err
		}
	}
	return s.FileStore.Save(dir, def)
}

func (s *faultyStore) setFailSave(fn func(dir string, def *guest.Definition) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSave = fn
}

// response is what the API answered.
type response struct {
	status int
	body   []byte
}

// err decodes an error answer.
func (r response) err() api.Error {
	var e api.Error
	json.Unmarshal(r.body, &e)
	return e
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.status, strings.TrimSpace(string(r.body)))
}

// do sends a request to the daemon's routes; body is sent as JSON unless
// it is a []byte.
func (h *harness) do(method, path string, body any) response {
	h.t.Helper()
	var data []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			h.t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	h.d.routes().ServeHTTP(rec, httptest.NewRequest(method, api.Version+path, bytes.NewReader(data)))
	return response{status: rec.Code, body: rec.Body.Bytes()}
}

// begin sends a request that starts an operation and returns it.
func (h *harness) begin(method, path string, body any) api.Operation {
	h.t.Helper()
	r := h.do(method, path, body)
	if r.status != http.StatusAccepted {
		h.t.Fatalf("%s %s: %s, want 202", method, path, r)
	}
	var op api.Operation
	if err := json.Unmarshal(r.body, &op); err != nil {
		h.t.Fatal(err)
	}
	return op
}

// wait waits for an operation to end and returns how it ended.
func (h *harness) wait(op api.Operation) api.Operation {
	h.t.Helper()
	done, err := h.d.ops.wait(context.Background(), op.ID, 20*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	if done.Status == api.OpRunning {
		h.t.Fatalf("operation %s %s still runs after 20s", op.Kind, op.Resource)
	}
	return done
}

// run starts an operation and waits for it; it returns the operation's
// error ("" for success).
func (h *harness) run(method, path string, body any) string {
	h.t.Helper()
	return h.wait(h.begin(method, path, body)).Error
}

// mustRun is run for an operation that must succeed.
func (h *harness) mustRun(method, path string, body any) {
	h.t.Helper()
	if msg := h.run(method, path, body); msg != "" {
		h.t.Fatalf("%s %s: %s", method, path, msg)
	}
}

// create makes a guest of the test template, started when start says.
func (h *harness) create(name string, start bool) {
	h.t.Helper()
	h.mustRun(http.MethodPost, "/guests", api.GuestCreate{Name: name, Template: testTemplate, Start: start})
}

// guest returns the API's view of a guest.
func (h *harness) guest(name string) (api.Guest, response) {
	h.t.Helper()
	r := h.do(http.MethodGet, "/guests/"+name, nil)
	var g api.Guest
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &g); err != nil {
			h.t.Fatal(err)
		}
	}
	return g, r
}

// state returns a guest's state as the API shows it, "" when it is gone.
func (h *harness) state(name string) string {
	h.t.Helper()
	g, r := h.guest(name)
	if r.status == http.StatusNotFound {
		return ""
	}
	if r.status != http.StatusOK {
		h.t.Fatalf("get %s: %s", name, r)
	}
	return g.State
}

// definition loads a guest's definition from the state dir.
func (h *harness) definition(name string) *guest.Definition {
	h.t.Helper()
	def, err := guest.FileStore{Dir: filepath.Join(h.dir, "guests")}.Load(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return def
}

// waitFor polls cond until it holds or 10s pass.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leftovers lists what is in the guests dir besides the named guests.
func (h *harness) leftovers(keep ...string) []string {
	h.t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.dir, "guests"))
	if err != nil {
		h.t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			left = append(left, e.Name())
		}
	}
	return left
}

// errInjected is the failure tests inject.
var errInjected = errors.New("injected failure")

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}
