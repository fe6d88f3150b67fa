package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// UpgradeProtocol is the Upgrade header value of exec and console sessions.
const UpgradeProtocol = "polyvisor-stream"

// upgrade hijacks the connection and answers 101, after which both sides
// speak internal/stream frames.
func upgrade(w http.ResponseWriter) (net.Conn, *bufio.Reader, error) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("upgrade: %w", err)
	}
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", UpgradeProtocol)
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %w", err)
	}
	return conn, rw.Reader, nil
}

// runningGuest returns a running guest's definition and its driver's
// optional ability T, or an error naming what is missing.
func runningGuest[T any](d *Daemon, name, ability string) (*guest.Definition, T, error) {
	var zero T
	e, err := d.guests.get(name)
	if err != nil {
		return nil, zero, err
	}
	def := e.def.Load()
	if !running(def) {
		return nil, zero, fmt.Errorf("guest %s: %w: start it with 'polyvisor start %s'", name, api.ErrNotRunning, name)
	}
	drv, err := d.driverFor(def)
	if err != nil {
		return nil, zero, err
	}
	ab, ok := drv.(T)
	if !ok {
		return nil, zero, fmt.Errorf("%w: class %s has no %s", api.ErrNotAvailable, def.Class, ability)
	}
	return def, ab, nil
}

// handleExec runs a command in a guest over an upgraded connection: stdin,
// resize and close-stdin frames in; stdout, stderr and one exit frame out.
func (d *Daemon) handleExec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Command) == 0 {
		writeError(w, fmt.Errorf("%w: command is empty: pass it after --", api.ErrInvalid))
		return
	}
	def, execer, err := runningGuest[driver.Execer](d, r.PathValue("name"), "exec")
	if err != nil {
		writeError(w, err)
		return
	}
	conn, in, err := upgrade(w)
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()

	out := stream.NewFrameWriter(conn)
	stdinR, stdinW := io.Pipe()
	resize := make(chan [2]uint16, 4)
	// Reads client frames until the client goes away; then the command
	// loses its stdin, as it would over ssh.
	go func() {
		defer stdinW.Close()
		for {
			f, err := stream.ReadFrame(in)
			if err != nil {
				return
			}
			switch f.Type {
			case stream.Stdin:
				if _, err := stdinW.Write(f.Data); err != nil {
					return
				}
			case stream.CloseStdin:
				stdinW.Close()
			case stream.Resize:
				if rows, cols, err := stream.DecodeResize(f.Data); err == nil {
					select {
					case resize <- [2]uint16{rows, cols}:
					default:
					}
				}
			}
		}
	}()
	code, err := execer.Exec(ctx, def, req, driver.Stdio{
		Stdin: stdinR, Stdout: out.Writer(stream.Stdout), Stderr: out.Writer(stream.Stderr), Resize: resize,
	})
	stdinR.Close()
	if err != nil {
		out.WriteFrame(stream.Error, []byte(err.Error()))
		return
	}
	out.WriteFrame(stream.Exit, stream.EncodeExit(int32(code)))
}

// attachConsole attaches to the console of the running guest the request
// names; ok is false when it answered the error.
func (d *Daemon) attachConsole(w http.ResponseWriter, r *http.Request) (*guest.Definition, net.Conn, bool) {
	def, consoler, err := runningGuest[driver.Consoler](d, r.PathValue("name"), "console")
	if err == nil {
		var monitor net.Conn
		if monitor, err = consoler.AttachConsole(r.Context(), def); err == nil {
			return def, monitor, true
		}
	}
	writeError(w, err)
	return nil, nil, false
}

// handleConsole joins the client to the guest's console, held by its
// monitor; both ends speak the same frames, so bytes are relayed as is.
func (d *Daemon) handleConsole(w http.ResponseWriter, r *http.Request) {
	_, monitor, ok := d.attachConsole(w, r)
	if !ok {
		return
	}
	defer monitor.Close()
	d.relayConsole(w, monitor)
}

// relayConsole takes the request's connection over and relays it to a
// console, both ways, until either side leaves or the daemon stops.
func (d *Daemon) relayConsole(w http.ResponseWriter, console io.ReadWriter) {
	conn, in, err := upgrade(w)
	if err != nil {
		return
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(console, in); done <- struct{}{} }()
	go func() { io.Copy(conn, console); done <- struct{}{} }()
	select {
	case <-done: // either side left: end the session
	case <-d.ctx.Done():
	}
}
