package monitored

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// spawnPatience bounds how long a new supervisor waits for an exiting one
// to let go of the directory's lock.
const spawnPatience = 5 * time.Second

// maxAnswer bounds one answer line from the supervisor.
const maxAnswer = 64 << 10

// Supervisor starts containers under one polyvisor-monitor --supervise
// for all of a daemon's guests, starting it when none runs. The
// supervisor exits by itself once it has had no guest for a while, and a
// daemon that restarts finds a running one by its socket.
//
// It keeps a copy of each guest's console (the pty master the supervisor
// sends with every start), one descriptor per guest and nothing else:
// should the supervisor die, it starts another and hands it each guest
// with its console, so that no console hangs up. Only when the daemon and
// the supervisor die together do the consoles go.
type Supervisor struct {
	// Monitor is the path of polyvisor-monitor.
	Monitor string
	// Dir is the supervisor's directory: socket, lock and log.
	Dir string
	// Linger, when not 0, replaces monitor.DefaultLinger.
	Linger time.Duration
	// Log receives what the daemon is not asked about: re-adoptions.
	Log *slog.Logger

	spawnMu sync.Mutex // one spawn at a time
	// launched starts the supervisors and reaps those started here.
	launched Launcher

	mu       sync.Mutex
	consoles map[string]*kept // guest id: its console copy
	watched  procutil.Identity
	// watch, while not nil, is the context of the goroutines watching
	// supervisors (one a supervisor, parked on its pidfd), which
	// stopWatching ends.
	watch        context.Context
	stopWatching context.CancelFunc
	watching     sync.WaitGroup
}

// kept is what it takes to hand a guest to a new supervisor.
type kept struct {
	cfg        monitor.Config
	init       procutil.Identity
	console    *os.File
	supervisor procutil.Identity // the one that runs the guest
}

// Start runs the container of cfg under the supervisor; the status
// identifies the guest's init, and as its monitor the supervisor, which
// every container of the daemon shares.
func (s *Supervisor) Start(ctx context.Context, cfg monitor.Config) (guest.Status, error) {
	req := monitor.Request{Op: "start", Args: cfg.Args()}
	for deadline := time.Now().Add(spawnPatience); ; {
		line, console, err := s.ask(ctx, req, nil, true)
		if err != nil {
			return guest.Status{}, err
		}
		if line == monitor.AnswerRetry {
			// It was exiting, idle: once it has closed its socket, the
			// next ask starts another.
			if time.Now().After(deadline) {
				return guest.Status{}, errors.New("start monitor: the supervisor kept exiting")
			}
			select {
			case <-ctx.Done():
				return guest.Status{}, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		pid, err := monitor.ParseReady(line)
		if err != nil {
			closeFile(console)
			return guest.Status{}, err
		}
		sup, err := s.identify()
		if err == nil {
			var status guest.Status
			status, err = runningStatus(guest.Status{MonitorPID: sup.PID, MonitorStart: sup.Start}, pid, cfg.ID)
			if err == nil {
				s.keep(cfg, procutil.Identity{PID: status.InitPID, Start: status.InitStart}, console, sup)
				return status, nil
			}
		}
		closeFile(console)
		return guest.Status{}, err
	}
}

// Reclaim takes a copy of the console of a guest that a supervisor runs,
// for a daemon that restarted and adopts it; nothing when no supervisor
// runs the guest (then its console is gone already).
func (s *Supervisor) Reclaim(ctx context.Context, cfg monitor.Config, init procutil.Identity) error {
	s.mu.Lock()
	_, have := s.consoles[cfg.ID]
	s.mu.Unlock()
	if have {
		return nil
	}
	line, console, err := s.ask(ctx, monitor.Request{Op: "console", ID: cfg.ID}, nil, false)
	if err != nil || line == monitor.AnswerEnded { // none runs
		return err
	}
	if line != monitor.AnswerOK || console == nil {
		closeFile(console)
		return fmt.Errorf("reclaim the console of %s: the supervisor answered %q", cfg.ID, line)
	}
	sup, err := s.identify()
	if err != nil {
		console.Close()
		return err
	}
	s.keep(cfg, init, console, sup)
	return nil
}

// Runs returns the supervisor that runs guest id, as far as this daemon
// knows: the one it last handed the guest to.
func (s *Supervisor) Runs(id string) (procutil.Identity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.consoles[id]; k != nil {
		return k.supervisor, true
	}
	return procutil.Identity{}, false
}

// Forget drops the console copy of a guest that has ended.
func (s *Supervisor) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.consoles[id]; k != nil {
		k.console.Close()
		delete(s.consoles, id)
	}
}

// WaitEnded returns once the supervisor has recorded the exit of guest id
// and deleted its container, at once when it does not supervise it (or
// none runs).
func (s *Supervisor) WaitEnded(ctx context.Context, id string) error {
	line, _, err := s.ask(ctx, monitor.Request{Op: "wait", ID: id}, nil, false)
	if err != nil || line == monitor.AnswerEnded {
		return err
	}
	return fmt.Errorf("wait for the end of %s: the supervisor answered %q", id, line)
}

// Release stops watching the supervisor, tells it to exit as soon as it
// has no guest, and waits for the one started here to be reaped: a
// daemon's shutdown.
func (s *Supervisor) Release(ctx context.Context) {
	s.mu.Lock()
	if s.stopWatching != nil {
		s.stopWatching()
		s.watch, s.stopWatching = nil, nil
	}
	s.mu.Unlock()
	s.watching.Wait()
	s.ask(ctx, monitor.Request{Op: "release"}, nil, false)
	s.launched.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, k := range s.consoles {
		k.console.Close()
		delete(s.consoles, id)
	}
}

// keep stores a guest's console copy, and watches the supervisor sup
// that runs it.
func (s *Supervisor) keep(cfg monitor.Config, init procutil.Identity, console *os.File, sup procutil.Identity) {
	if console == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.consoles == nil {
		s.consoles = map[string]*kept{}
	}
	if old := s.consoles[cfg.ID]; old != nil && old.console != console {
		old.console.Close()
	}
	s.consoles[cfg.ID] = &kept{cfg: cfg, init: init, console: console, supervisor: sup}
	if s.watched == sup {
		return
	}
	// A new supervisor starts only once the last has died, so the watch of
	// the last has ended, or is handing its guests over: that hand-over
	// must go on, under the same context.
	if s.watch == nil {
		s.watch, s.stopWatching = context.WithCancel(context.Background())
	}
	ctx := s.watch
	s.watched = sup
	s.watching.Add(1)
	go func() {
		defer s.watching.Done()
		if sup.Wait(ctx) == nil && ctx.Err() == nil {
			s.readopt(ctx, sup)
		}
	}()
}

// readopt hands every guest of the dead supervisor sup to a new one, with
// its console.
func (s *Supervisor) readopt(ctx context.Context, sup procutil.Identity) {
	s.mu.Lock()
	guests := make([]*kept, 0, len(s.consoles))
	for _, k := range s.consoles {
		guests = append(guests, k)
	}
	s.mu.Unlock()
	if len(guests) == 0 {
		return // it exited, idle, as it does
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	log.Warn("the supervisor died; its guests go to a new one", "pid", sup.PID, "guests", len(guests))
	for _, k := range guests {
		if !k.init.Alive() {
			s.Forget(k.cfg.ID)
			continue
		}
		req := monitor.Request{Op: "adopt", Args: k.cfg.Args(), PID: k.init.PID, Start: k.init.Start}
		line, _, err := s.ask(ctx, req, k.console, true)
		if err == nil {
			_, err = monitor.ParseReady(line)
		}
		if err != nil {
			log.Error("hand a guest to the new supervisor", "guest", k.cfg.ID, "err", err)
			continue
		}
		if next, err := s.identify(); err == nil {
			s.keep(k.cfg, k.init, k.console, next)
		}
	}
}

// Is reports whether p is the running supervisor: a guest whose
// definition lost its handle still names it as its monitor.
func (s *Supervisor) Is(p procutil.Identity) bool {
	sup, err := s.identify()
	return err == nil && sup == p
}

// identify reads the running supervisor's pid from its lock.
func (s *Supervisor) identify() (procutil.Identity, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, monitor.SupervisorLockName))
	if err != nil {
		return procutil.Identity{}, fmt.Errorf("find the supervisor: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return procutil.Identity{}, fmt.Errorf("find the supervisor: its lock holds %q, not a pid", data)
	}
	return procutil.Identify(pid)
}

// errNotRunning is a dial that found no supervisor.
var errNotRunning = errors.New("no supervisor runs")

// ask sends req, with attach's descriptor if not nil, and reads the
// one-line answer and the descriptor that may come with it; with spawn, it
// starts a supervisor if none runs. Without, no supervisor answers
// "ended".
func (s *Supervisor) ask(ctx context.Context, req monitor.Request, attach *os.File, spawn bool) (string, *os.File, error) {
	conn, err := s.dial(ctx)
	if errors.Is(err, errNotRunning) && spawn {
		if err = s.spawn(ctx); err == nil {
			conn, err = s.dial(ctx)
		}
	}
	if errors.Is(err, errNotRunning) && !spawn {
		return monitor.AnswerEnded, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	data, _ := json.Marshal(req) // strings and numbers: it cannot fail
	if err := sendWith(conn, append(data, '\n'), attach); err != nil {
		return "", nil, fmt.Errorf("supervisor: send %s: %w", req.Op, err)
	}
	// A start waits on runc (bounded by ReadyTimeout); a wait on the
	// guest's last moments; either way the caller's ctx bounds it too.
	line, file, err := readAnswer(ctx, conn)
	if err != nil {
		return "", nil, fmt.Errorf("supervisor: %s: %w", req.Op, err)
	}
	return line, file, nil
}

// sendWith writes msg to conn in one message, with f's descriptor attached
// if f is not nil. The descriptor is taken inside Control, which keeps f
// open meanwhile, and not with Fd, which would make the console blocking
// for the supervisor too (the flag belongs to the open file they share).
func sendWith(conn *net.UnixConn, msg []byte, f *os.File) error {
	if f == nil {
		_, _, err := conn.WriteMsgUnix(msg, nil, nil)
		return err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	err = raw.Control(func(fd uintptr) {
		_, _, sendErr = conn.WriteMsgUnix(msg, unix.UnixRights(int(fd)), nil)
	})
	return errors.Join(err, sendErr)
}

// readAnswer reads one line from conn and the descriptor sent with it, if
// any, giving up with ctx or after ReadyTimeout.
func readAnswer(ctx context.Context, conn *net.UnixConn) (string, *os.File, error) {
	deadline := time.Now().Add(ReadyTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	var line []byte
	var file *os.File
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for !bytes.HasSuffix(line, []byte("\n")) {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		line = append(line, buf[:n]...)
		files, _ := stream.FilesOf(oob[:oobn]) // a console that failed to come is noticed by its user
		for _, f := range files {
			if file == nil {
				file = f
			} else {
				f.Close()
			}
		}
		if err == nil && n == 0 || len(line) > maxAnswer {
			err = errors.New("no whole answer")
		}
		if err != nil {
			closeFile(file)
			if ctx.Err() != nil {
				return "", nil, ctx.Err()
			}
			return "", nil, fmt.Errorf("the supervisor hung up without answering: %w", err)
		}
	}
	return strings.TrimSpace(string(line)), file, nil
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// dial connects to the supervisor's socket; errNotRunning when none
// listens there.
func (s *Supervisor) dial(ctx context.Context) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(s.Dir, monitor.SupervisorSocketName))
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, errNotRunning
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the supervisor: %w", err)
	}
	return conn.(*net.UnixConn), nil
}

// spawn starts a supervisor, unless one has started meanwhile, and waits
// until it listens. One that is exiting still holds the lock for a
// moment; the new one is tried again until it lets go.
func (s *Supervisor) spawn(ctx context.Context) error {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	deadline := time.Now().Add(spawnPatience)
	for {
		if conn, err := s.dial(ctx); err == nil {
			conn.Close()
			return nil
		}
		err := s.spawnOnce(ctx)
		if err == nil || !strings.Contains(err.Error(), "another supervisor runs") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Supervisor) spawnOnce(ctx context.Context) error {
	args := []string{"--supervise", s.Dir}
	if s.Linger != 0 {
		args = append(args, "--linger", s.Linger.String())
	}
	_, line, err := s.launched.launch(ctx, s.Monitor, args)
	if err == nil {
		_, err = monitor.ParseReady(line)
	}
	if err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	return nil
}

// runningStatus is the status of a guest whose process, pid, has just
// started: identified by its start time, so that a recycled pid is never
// taken for it.
func runningStatus(status guest.Status, pid int, id string) (guest.Status, error) {
	proc, err := procutil.Identify(pid)
	if err != nil {
		return status, fmt.Errorf("the guest's process exited at once: %w (see polyvisor console --log %s)", err, id)
	}
	status.State = api.StateRunning
	status.InitPID, status.InitStart = proc.PID, proc.Start
	status.StartedAt = time.Now().UTC()
	return status, nil
}
