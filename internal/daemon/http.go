package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/webui"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// route is one pattern of the API and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// routeTable is the REST API (docs/api.md): every route, for routes to
// serve and for tests to try each.
func (d *Daemon) routeTable() []route {
	v := api.Version
	ok, accepted := http.StatusOK, http.StatusAccepted
	return []route{
		{"GET " + v, answer(ok, d.handleInfo)},
		{"GET " + v + "/host/check", answer(ok, d.handleHostCheck)},
		{"GET " + v + "/classes", answer(ok, d.handleClasses)},
		{"GET " + v + "/hosts", answer(ok, d.handleHosts)},
		{"POST " + v + "/hosts", answer(http.StatusCreated, d.handleHostAdd)},
		{"DELETE " + v + "/hosts/{host}", answer(http.StatusNoContent, d.handleHostRemove)},
		{"GET " + v + "/hosts/guests", answer(ok, d.handleHostGuests)},
		{"POST " + v + "/hosts/{host}/imports", answer(accepted, d.hostImport)},
		{"POST " + v + "/guests/{name}/move", answer(accepted, d.handleMove)},
		{"GET " + v + "/guests", answer(ok, d.handleList)},
		{"POST " + v + "/guests", answer(accepted, d.handleCreate)},
		{"GET " + v + "/guests/{name}", answer(ok, orHost(d.handleGet, d.hostGuestGet))},
		{"DELETE " + v + "/guests/{name}", answer(accepted, orHost(d.handleDelete, d.hostGuestDelete))},
		{"PUT " + v + "/guests/{name}/state", answer(accepted, orHost(d.handleState, d.hostGuestState))},
		{"GET " + v + "/guests/{name}/config", localOnlyStream("config show", d.handleConfigShow)},
		{"PATCH " + v + "/guests/{name}/config", answer(ok, orHost(d.handleConfigSet, d.hostGuestConfigSet))},
		{"PUT " + v + "/guests/{name}/config", answer(ok, localOnly("config edit", d.handleConfigReplace))},
		{"POST " + v + "/guests/{name}/exec", localOnlyStream("exec", d.handleExec)},
		{"GET " + v + "/guests/{name}/console", orHostStream(d.handleConsole, d.hostConsole)},
		{"GET " + v + "/guests/{name}/console/log", localOnlyStream("console log", d.handleConsoleLog)},
		{"GET " + v + "/guests/{name}/snapshots", answer(ok, orHost(d.handleSnapshots, d.hostGuestSnapshots))},
		{"POST " + v + "/guests/{name}/snapshots", answer(accepted, orHost(d.handleSnapshotCreate, d.hostGuestSnapshotCreate))},
		{"POST " + v + "/guests/{name}/snapshots/{snap}/restore", answer(accepted, orHost(d.handleSnapshotRestore, d.hostGuestSnapshotRestore))},
		{"DELETE " + v + "/guests/{name}/snapshots/{snap}", answer(accepted, orHost(d.handleSnapshotDelete, d.hostGuestSnapshotDelete))},
		{"POST " + v + "/guests/{name}/copy", answer(accepted, localOnly("copy", d.handleCopy))},
		{"GET " + v + "/templates", answer(ok, d.handleTemplates)},
		{"POST " + v + "/templates", answer(accepted, d.handleTemplateBuild)},
		{"GET " + v + "/templates/{name}", answer(ok, d.handleTemplate)},
		{"GET " + v + "/templates/{name}/archive", http.HandlerFunc(d.handleTemplateArchive)},
		{"DELETE " + v + "/templates/{name}", answer(http.StatusNoContent, d.handleTemplateDelete)},
		{"GET " + v + "/networks", answer(ok, d.handleNetworks)},
		{"POST " + v + "/networks", answer(http.StatusCreated, d.handleNetworkCreate)},
		{"GET " + v + "/networks/{name}", answer(ok, d.handleNetwork)},
		{"DELETE " + v + "/networks/{name}", answer(http.StatusNoContent, d.handleNetworkDelete)},
		{"POST " + v + "/imports", answer(accepted, d.handleImport)},
		{"POST " + v + "/guests/{name}/export", answer(accepted, orHost(d.handleExport, d.hostGuestExport))},
		{"GET " + v + "/operations/{id}", answer(ok, d.handleOperation)},
		{"GET " + v + "/operations/{id}/wait", answer(ok, d.handleOperationWait)},
		{"GET " + v + "/events", http.HandlerFunc(d.handleEvents)},
		{"GET " + healthPath, answer(ok, d.handleHealth)},
		{"GET " + v + "/trust", answer(ok, d.handleTrustList)},
		{"POST " + v + "/trust", answer(http.StatusCreated, d.handleTrustJoin)},
		{"POST " + v + "/trust/tokens", answer(http.StatusCreated, d.handleTrustToken)},
		{"DELETE " + v + "/trust/{name}", answer(http.StatusNoContent, d.handleTrustRemove)},
		{"GET /metrics", d.metrics.handler()},
		{"POST " + v + "/cluster", answer(ok, d.handleClusterInit)},
		{"GET " + v + "/cluster", answer(ok, d.handleClusterList)},
		{"POST " + v + "/cluster/tokens", answer(http.StatusCreated, d.handleClusterToken)},
		{"POST " + v + "/cluster/join", answer(ok, d.handleClusterJoin)},
		{"POST " + v + "/cluster/members", answer(ok, d.handleClusterAdmit)},
		{"DELETE " + v + "/cluster/members/{member}", answer(http.StatusNoContent, d.handleClusterRemove)},
		{"POST " + v + "/cluster/leave", answer(http.StatusNoContent, d.handleClusterLeave)},
		{"PUT " + v + "/cluster/replicas/{name}", http.HandlerFunc(d.handleReplicaReceive)},
		{"POST " + v + "/cluster/replicas/{name}/promote", answer(accepted, d.handleReplicaPromote)},
		{"POST " + v + "/cluster/migrations/{name}", answer(ok, d.handleMigrationIn)},
		{"POST " + v + "/cluster/migrations/{name}/finish", answer(http.StatusNoContent, d.handleMigrationFinish)},
		{"POST " + v + "/cluster/migrations/{name}/abort", answer(http.StatusNoContent, d.handleMigrationAbort)},
		{"GET " + v + "/guests/{name}/console/ws", localOnlyStream("the web console", d.handleConsoleWS)},
		{"GET " + v + "/guests/{name}/usage/history", answer(ok, localOnly("usage history", d.handleUsageHistory))},
		{"POST " + uploadPath, http.HandlerFunc(d.handleImportUpload)},
		{"GET " + v + "/bench/{file}", http.HandlerFunc(d.handleBenchReport)},
		{"GET " + webui.Prefix, webui.Handler()},
		{"POST " + loginPath, http.HandlerFunc(d.handleLogin)},
		{"GET " + webAPIPrefix + "session", answer(ok, d.handleSession)},
		{"POST " + webAPIPrefix + "logout", http.HandlerFunc(d.handleLogout)},
	}
}

// routes serves routeTable, each route behind authenticate and timed.
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	for _, r := range d.routeTable() {
		mux.Handle(r.pattern, r.handler)
	}
	return d.authenticate(d.metrics.instrument(d.clusterGate(mux)))
}

// Deadlines on what a client sends, so that one that stalls holds its
// connection for a bounded time only: its headers, then its whole request.
const (
	headerTimeout = 10 * time.Second
	readTimeout   = 30 * time.Second
)

// newServer serves h under those deadlines (readTimeout is a parameter for
// tests). Neither cuts a request once it is read: net/http lifts the read
// deadline when it has the body (so the operation wait's long poll runs
// on) and when a stream takes the connection over (exec, console).
func newServer(ctx context.Context, h http.Handler, readTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       readTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
}

// bodyError says what went wrong reading a request's body.
func bodyError(err error) error {
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		return fmt.Errorf("%w: request body: larger than %d bytes, the most this API takes", api.ErrInvalid, tooLarge.Limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: request body: it stopped arriving before it was whole; send the whole body with the request", api.ErrInvalid)
	}
	return fmt.Errorf("%w: request body: %v", api.ErrInvalid, err)
}

// answer adapts a handler that returns a value (or an error) to HTTP: the
// value as JSON with status, the error as writeError says.
func answer(status int, fn func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	})
}

// writeJSON answers with a JSON body, ended by a newline as
// json.Encoder ends it. The body is encoded whole first and sent with its
// length: a list of 1,000 guests is about 900 KB, which a streaming
// encoder would send as some 200 chunks, one write each.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := encode(v)
	if err != nil {
		// A string alone: this cannot fail in turn.
		status = http.StatusInternalServerError
		body, _ = json.Marshal(api.Error{Error: "encode the answer: " + err.Error()})
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// encodedJSON is an answer already encoded, which writeJSON sends as is.
type encodedJSON []byte

// encode is v in JSON, or v itself when it is encoded already.
func encode(v any) ([]byte, error) {
	if encoded, ok := v.(encodedJSON); ok {
		return encoded, nil
	}
	return json.Marshal(v)
}

// writeError maps an error to its status (api.Status, the one place) and a
// one-line body.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, api.Status(err), api.Error{Error: err.Error(), Kind: api.Kind(err)})
}

// readJSON decodes a request body strictly.
// guestRequest decodes a request's body into v and finds the guest its
// path names.
func (d *Daemon) guestRequest(r *http.Request, v any) (*entry, error) {
	if err := readJSON(r, v); err != nil {
		return nil, err
	}
	return d.guests.get(r.PathValue("name"))
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // bounded by authenticate
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	return nil
}

func (d *Daemon) handleInfo(r *http.Request) (any, error) {
	listen, fingerprint := d.listening()
	return api.ServerInfo{
		Version: Version, StateDir: d.layout.StateDir, PID: os.Getpid(), EventSubscribers: d.events.Subscribers(),
		Listen: listen, Fingerprint: fingerprint, Client: clientName(r),
	}, nil
}

func (d *Daemon) handleHostCheck(r *http.Request) (any, error) {
	check := api.NewHostRequirements()
	for _, drv := range d.cfg.Drivers.All() {
		v := drv.Check(r.Context())
		caps := drv.Capabilities()
		v.Capabilities = &caps
		check.Classes = append(check.Classes, v)
	}
	return check, nil
}

// handleClasses lists every registered driver: its type, whether it is
// its type's default engine, what it can do and whether it works here.
func (d *Daemon) handleClasses(r *http.Request) (any, error) {
	classes := []api.Class{}
	for _, drv := range d.cfg.Drivers.All() {
		classes = append(classes, api.Class{
			Name: drv.Name(), Type: drv.Type(), Default: d.cfg.Drivers.IsDefault(drv),
			Capabilities: drv.Capabilities(), Verdict: drv.Check(r.Context()),
		})
	}
	return classes, nil
}

// handleList lists every guest, whole or (?view=summary) as `list` shows
// it.
func (d *Daemon) handleList(r *http.Request) (any, error) {
	summary := false
	switch view := r.URL.Query().Get("view"); view {
	case "", api.ViewFull:
	case api.ViewSummary:
		summary = true
	default:
		return nil, fmt.Errorf("%w: view %q: use %s or %s", api.ErrInvalid, view, api.ViewFull, api.ViewSummary)
	}
	// The array is put together from each guest's encoded view, which a
	// stopped guest's listing keeps (see listView).
	var out bytes.Buffer
	out.WriteByte('[')
	add := func(encoded []byte) {
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		out.Write(encoded)
	}
	for _, e := range d.guests.entries() {
		add(d.listView(e, summary))
	}
	for _, g := range d.guests.brokenViews() {
		add(encodeListed(g, summary))
	}
	out.WriteByte(']')
	return encodedJSON(out.Bytes()), nil
}

func (d *Daemon) handleGet(r *http.Request) (any, error) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	def := e.def.Load()
	g := d.view(def)
	if running(def) {
		if u, ok := d.usage(r.Context(), def); ok {
			g.Usage = &u
		}
	}
	return g, nil
}

// handleCreate validates at once (so bad input fails fast with 400) and
// runs the slow part as an operation.
func (d *Daemon) handleCreate(r *http.Request) (any, error) {
	var req api.GuestCreate
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	def, err := d.newDefinition(req)
	if errors.Is(err, api.ErrNotFound) && d.fetchTemplateFor(r.Context(), req) {
		def, err = d.newDefinition(req)
	}
	if err != nil {
		return nil, err
	}
	if err := d.reserve(def); err != nil {
		return nil, err
	}
	if err := d.setPlacement(r.Context(), def.Name, req); err != nil {
		d.guests.release(def.Name, nil)
		d.unclaim(def.Name)
		return nil, err
	}
	kind := "create"
	if req.Start {
		kind = "launch"
	}
	return d.ops.start(d.ctx, kind, def.Name, func(ctx context.Context, _ func(api.Progress)) error {
		return d.create(ctx, req, def)
	}), nil
}

// stopTimeout is how long a stop request lets the guest's OS take: none
// when forced.
func stopTimeout(req api.StateChange) (time.Duration, error) {
	if req.Force {
		return 0, nil
	}
	if req.Timeout == "" {
		return DefaultStopTimeout, nil
	}
	timeout, err := time.ParseDuration(req.Timeout)
	if err != nil || timeout < 0 {
		return 0, fmt.Errorf("%w: timeout %q: use a Go duration like 30s or 2m", api.ErrInvalid, req.Timeout)
	}
	return timeout, nil
}

func (d *Daemon) handleState(r *http.Request) (any, error) {
	var req api.StateChange
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	e, err := d.guests.get(name)
	if err != nil {
		return nil, err
	}
	timeout, err := stopTimeout(req)
	if err != nil {
		return nil, err
	}
	var fn func(ctx context.Context) error
	switch req.Action {
	case "start":
		fn = func(ctx context.Context) error { return d.startLocked(ctx, e, guest.IntentStart) }
	case "stop":
		fn = func(ctx context.Context) error {
			if !running(e.def.Load()) {
				return fmt.Errorf("guest %s: %w", name, api.ErrNotRunning)
			}
			return d.stopLocked(ctx, e, timeout)
		}
	case "restart":
		fn = func(ctx context.Context) error {
			if running(e.def.Load()) {
				if err := d.stopLocked(ctx, e, timeout); err != nil {
					return err
				}
			}
			return d.startLocked(ctx, e, guest.IntentStart)
		}
	default:
		return nil, fmt.Errorf("%w: action %q: use start, stop or restart", api.ErrInvalid, req.Action)
	}
	return d.startShort(e, req.Action, name, fn)
}

func (d *Daemon) handleDelete(r *http.Request) (any, error) {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force") == "1"
	if d.guests.brokenCause(name) != nil {
		return d.deleteBroken(name, force)
	}
	e, err := d.guests.get(name)
	if err != nil {
		return nil, err
	}
	// Refuse at once rather than in the operation: the common mistake
	// deserves an immediate, clear answer.
	if running(e.def.Load()) && !force {
		return nil, fmt.Errorf("guest %s: %w: it is running; stop it first or pass --force", name, api.ErrConflict)
	}
	return d.startShort(e, "delete", name, func(ctx context.Context) error {
		return d.deleteLocked(ctx, e, force)
	})
}

func (d *Daemon) handleConfigShow(w http.ResponseWriter, r *http.Request) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := e.def.Load().Marshal()
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(data)
}

func (d *Daemon) handleConfigSet(r *http.Request) (any, error) {
	var req api.ConfigChange
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	return d.setConfig(r.Context(), e, req.Set, req.Force)
}

// handleConfigReplace takes a whole edited guest.yaml (config edit): it is
// parsed strictly, and only the settable keys may differ.
func (d *Daemon) handleConfigReplace(r *http.Request) (any, error) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(r.Body) // bounded by authenticate
	if err != nil {
		return nil, bodyError(err)
	}
	edited, err := guest.Parse(data)
	if err != nil {
		return nil, err
	}
	set, err := guest.Changes(e.def.Load(), edited)
	if err != nil || len(set) == 0 {
		return api.ConfigResult{Applied: map[string]string{}}, err
	}
	return d.setConfig(r.Context(), e, set, false)
}

func (d *Daemon) handleConsoleLog(w http.ResponseWriter, r *http.Request) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	def := e.def.Load()
	drv, err := d.driverFor(def)
	if err != nil {
		writeError(w, err)
		return
	}
	c, ok := drv.(driver.Consoler)
	if !ok {
		writeError(w, fmt.Errorf("%w: class %s has no console", api.ErrNotAvailable, def.Class))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// The rotated generation first, so the output reads in order.
	for _, path := range []string{c.ConsoleLog(def) + ".1", c.ConsoleLog(def)} {
		if f, err := os.Open(path); err == nil {
			io.Copy(w, f)
			f.Close()
		}
	}
}

func (d *Daemon) handleTemplates(r *http.Request) (any, error) {
	list, err := d.templates.List()
	if err != nil {
		return nil, err
	}
	for i := range list {
		list[i].UsedBy = nonNil(d.guests.usersOf(list[i].ID))
	}
	if list == nil {
		list = []api.Template{}
	}
	return list, nil
}

func (d *Daemon) handleTemplate(r *http.Request) (any, error) {
	t, err := d.templates.Load(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	t.UsedBy = nonNil(d.guests.usersOf(t.ID))
	return t, nil
}

func (d *Daemon) handleTemplateBuild(r *http.Request) (any, error) {
	var req api.TemplateBuild
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	resolved, err := template.Request{Source: req.Source, Name: req.Name, Arch: req.Arch, Type: req.Type, Firmware: req.Firmware}.Resolve()
	if err != nil {
		return nil, err
	}
	if _, err := d.templates.Load(resolved.Key); err == nil {
		return nil, fmt.Errorf("template %s: %w: delete it first or pass --name", resolved.Key, api.ErrExists)
	}
	return d.ops.start(d.ctx, "template-build", resolved.Key, func(ctx context.Context, progress func(api.Progress)) error {
		_, err := d.templates.Build(ctx, resolved.Request, func(phase string, done, total int64) {
			progress(api.Progress{Phase: phase, Done: done, Total: total})
		})
		return err
	}), nil
}

func (d *Daemon) handleTemplateDelete(r *http.Request) (any, error) {
	name := r.PathValue("name")
	if err := d.guests.claimTemplate(name); err != nil {
		return nil, err
	}
	defer d.guests.unclaimTemplate(name)
	if err := d.fault("template-delete-checked"); err != nil {
		return nil, err
	}
	return nil, d.templates.Delete(name)
}

func (d *Daemon) handleNetworks(r *http.Request) (any, error) {
	return d.networks.List(), nil
}

func (d *Daemon) handleNetworkCreate(r *http.Request) (any, error) {
	var req api.NetworkCreate
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	return d.networks.Create(r.Context(), req)
}

func (d *Daemon) handleNetwork(r *http.Request) (any, error) {
	return d.networks.Get(r.PathValue("name"))
}

func (d *Daemon) handleNetworkDelete(r *http.Request) (any, error) {
	name := r.PathValue("name")
	if err := d.guests.claimNetwork(name); err != nil {
		return nil, err
	}
	defer d.guests.unclaimNetwork(name)
	return nil, d.networks.Delete(r.Context(), name, nil)
}

func (d *Daemon) handleOperation(r *http.Request) (any, error) {
	op, err := d.ops.get(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return op.snapshot(), nil
}

func (d *Daemon) handleOperationWait(r *http.Request) (any, error) {
	timeout := 30 * time.Second
	if s := r.URL.Query().Get("timeout"); s != "" {
		if secs, err := strconv.ParseFloat(s, 64); err == nil && secs >= 0 {
			timeout = time.Duration(secs * float64(time.Second))
		}
	}
	return d.ops.wait(r.Context(), r.PathValue("id"), timeout)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
