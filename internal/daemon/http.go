package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/template"
)

// routes maps the REST API (docs/api.md) onto handlers.
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	v := api.Version
	mux.HandleFunc("GET "+v, d.handleInfo)
	mux.HandleFunc("GET "+v+"/host/check", d.handleHostCheck)
	mux.HandleFunc("GET "+v+"/guests", d.handleList)
	mux.HandleFunc("POST "+v+"/guests", d.handleCreate)
	mux.HandleFunc("GET "+v+"/guests/{name}", d.handleGet)
	mux.HandleFunc("DELETE "+v+"/guests/{name}", d.handleDelete)
	mux.HandleFunc("PUT "+v+"/guests/{name}/state", d.handleState)
	mux.HandleFunc("GET "+v+"/guests/{name}/config", d.handleConfigShow)
	mux.HandleFunc("PATCH "+v+"/guests/{name}/config", d.handleConfigSet)
	mux.HandleFunc("PUT "+v+"/guests/{name}/config", d.handleConfigReplace)
	mux.HandleFunc("POST "+v+"/guests/{name}/exec", d.handleExec)
	mux.HandleFunc("GET "+v+"/guests/{name}/console", d.handleConsole)
	mux.HandleFunc("GET "+v+"/guests/{name}/console/log", d.handleConsoleLog)
	mux.HandleFunc("GET "+v+"/templates", d.handleTemplates)
	mux.HandleFunc("POST "+v+"/templates", d.handleTemplateBuild)
	mux.HandleFunc("GET "+v+"/templates/{name}", d.handleTemplate)
	mux.HandleFunc("DELETE "+v+"/templates/{name}", d.handleTemplateDelete)
	mux.HandleFunc("GET "+v+"/operations/{id}", d.handleOperation)
	mux.HandleFunc("GET "+v+"/operations/{id}/wait", d.handleOperationWait)
	return mux
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError maps an error to its status (api.Status, the one place) and a
// one-line body.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, api.Status(err), api.Error{Error: err.Error(), Kind: api.Kind(err)})
}

// readJSON decodes a request body strictly.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", api.ErrInvalid, err)
	}
	return nil
}

func (d *Daemon) handleInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.ServerInfo{Version: Version, StateDir: d.layout.StateDir, PID: os.Getpid()})
}

func (d *Daemon) handleHostCheck(w http.ResponseWriter, r *http.Request) {
	var check api.HostCheck
	for _, drv := range d.cfg.Drivers.All() {
		check.Classes = append(check.Classes, drv.Check(r.Context()))
	}
	writeJSON(w, http.StatusOK, check)
}

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	defs := d.guests.all()
	out := make([]api.Guest, 0, len(defs))
	for _, def := range defs {
		out = append(out, d.view(def))
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleGet(w http.ResponseWriter, r *http.Request) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d.view(e.def.Load()))
}

// handleCreate validates at once (so bad input fails fast with 400) and
// runs the slow part as an operation.
func (d *Daemon) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.GuestCreate
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	def, err := d.newDefinition(req)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.guests.reserve(def.Name); err != nil {
		writeError(w, err)
		return
	}
	kind := "create"
	if req.Start {
		kind = "launch"
	}
	op := d.ops.start(d.ctx, kind, def.Name, func(ctx context.Context, _ func(api.Progress)) error {
		return d.create(ctx, req, def)
	})
	writeJSON(w, http.StatusAccepted, op)
}

func (d *Daemon) handleState(w http.ResponseWriter, r *http.Request) {
	var req api.StateChange
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	timeout := DefaultStopTimeout
	if req.Timeout != "" {
		if timeout, err = time.ParseDuration(req.Timeout); err != nil || timeout < 0 {
			writeError(w, fmt.Errorf("%w: timeout %q: use a Go duration like 30s or 2m", api.ErrInvalid, req.Timeout))
			return
		}
	}
	if req.Force {
		timeout = 0
	}
	var fn func(ctx context.Context) error
	switch req.Action {
	case "start":
		fn = func(ctx context.Context) error { return d.startLocked(ctx, e) }
	case "stop":
		fn = func(ctx context.Context) error {
			if !running(e.def.Load()) {
				return fmt.Errorf("guest %s: %w", r.PathValue("name"), api.ErrNotRunning)
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
			return d.startLocked(ctx, e)
		}
	default:
		writeError(w, fmt.Errorf("%w: action %q: use start, stop or restart", api.ErrInvalid, req.Action))
		return
	}
	op := d.ops.start(d.ctx, req.Action, r.PathValue("name"), func(ctx context.Context, _ func(api.Progress)) error {
		e.op.Lock()
		defer e.op.Unlock()
		return fn(ctx)
	})
	writeJSON(w, http.StatusAccepted, op)
}

func (d *Daemon) handleDelete(w http.ResponseWriter, r *http.Request) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	force := r.URL.Query().Get("force") == "1"
	// Refuse at once rather than in the operation: the common mistake
	// deserves an immediate, clear answer.
	if running(e.def.Load()) && !force {
		writeError(w, fmt.Errorf("guest %s: %w: it is running; stop it first or pass --force", r.PathValue("name"), api.ErrConflict))
		return
	}
	op := d.ops.start(d.ctx, "delete", r.PathValue("name"), func(ctx context.Context, _ func(api.Progress)) error {
		e.op.Lock()
		defer e.op.Unlock()
		return d.deleteLocked(ctx, e, force)
	})
	writeJSON(w, http.StatusAccepted, op)
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

func (d *Daemon) handleConfigSet(w http.ResponseWriter, r *http.Request) {
	var req api.ConfigChange
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	result, err := d.setConfig(r.Context(), e, req.Set)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, result)
}

// handleConfigReplace takes a whole edited guest.yaml (config edit): it is
// parsed strictly, and only the settable keys may differ.
func (d *Daemon) handleConfigReplace(w http.ResponseWriter, r *http.Request) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, err)
		return
	}
	edited, err := guest.Parse(data)
	if err != nil {
		writeError(w, err)
		return
	}
	set, err := guest.Changes(e.def.Load(), edited)
	if err != nil {
		writeError(w, err)
		return
	}
	result := api.ConfigResult{Applied: map[string]string{}}
	if len(set) > 0 {
		if result, err = d.setConfig(r.Context(), e, set); err != nil {
			writeError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, result)
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

func (d *Daemon) handleTemplates(w http.ResponseWriter, r *http.Request) {
	list, err := d.templates.List()
	if err != nil {
		writeError(w, err)
		return
	}
	for i := range list {
		list[i].UsedBy = nonNil(d.guests.usersOf(list[i].Name))
	}
	if list == nil {
		list = []api.Template{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (d *Daemon) handleTemplate(w http.ResponseWriter, r *http.Request) {
	t, err := d.templates.Load(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	t.UsedBy = nonNil(d.guests.usersOf(t.Name))
	writeJSON(w, http.StatusOK, t)
}

func (d *Daemon) handleTemplateBuild(w http.ResponseWriter, r *http.Request) {
	var req api.TemplateBuild
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	resolved, _, err := template.Request{Source: req.Source, Name: req.Name, Arch: req.Arch}.Resolve()
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := d.templates.Load(resolved.Name); err == nil {
		writeError(w, fmt.Errorf("template %s: %w: delete it first or pass --name", resolved.Name, api.ErrExists))
		return
	}
	op := d.ops.start(d.ctx, "template-build", resolved.Name, func(ctx context.Context, progress func(api.Progress)) error {
		_, err := d.templates.Build(ctx, resolved, func(phase string, done, total int64) {
			progress(api.Progress{Phase: phase, Done: done, Total: total})
		})
		return err
	})
	writeJSON(w, http.StatusAccepted, op)
}

func (d *Daemon) handleTemplateDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d.templateMu.Lock()
	defer d.templateMu.Unlock()
	if users := d.guests.usersOf(name); len(users) > 0 {
		writeError(w, fmt.Errorf("%w: template %s is used by %s; delete them first", api.ErrConflict, name, strings.Join(users, ", ")))
		return
	}
	if err := d.templates.Delete(name); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleOperation(w http.ResponseWriter, r *http.Request) {
	op, err := d.ops.get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, op.snapshot())
}

func (d *Daemon) handleOperationWait(w http.ResponseWriter, r *http.Request) {
	timeout := 30 * time.Second
	if s := r.URL.Query().Get("timeout"); s != "" {
		if secs, err := strconv.ParseFloat(s, 64); err == nil && secs >= 0 {
			timeout = time.Duration(secs * float64(time.Second))
		}
	}
	op, err := d.ops.wait(r.Context(), r.PathValue("id"), timeout)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, op)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
