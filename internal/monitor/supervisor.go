package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// Names of the files in a supervisor's directory (SupervisorConfig.Dir).
const (
	// SupervisorSocketName is the socket the daemon sends requests to.
	SupervisorSocketName = "supervisor.sock"
	// SupervisorLockName is locked by the running supervisor and holds
	// its pid.
	SupervisorLockName = "supervisor.lock"
	// SupervisorLogName is the supervisor's own diagnostic log; each
	// guest's story goes to its run directory's monitor.log, as with a
	// monitor of its own.
	SupervisorLogName = "supervisor.log"
)

// DefaultLinger is how long a supervisor with no guest left waits for the
// next before it exits: launches one after the other find it running.
const DefaultLinger = 10 * time.Second

// maxRequest bounds one request line, and requestTimeout the wait for it.
const (
	maxRequest     = 64 << 10
	requestTimeout = 10 * time.Second
)

// Request is one line a client sends on the supervisor's socket, as JSON.
// The supervisor answers with one line:
//
//	{"op":"start","args":[...]}  runs a container: args as Config.Args
//	                             makes them; the answer is a ready line
//	                             (see ParseReady),
//	                             or "retry" from a supervisor that is
//	                             exiting
//	{"op":"wait","id":"ID"}      answers "ended" once the guest's exit is
//	                             recorded and its container deleted (at
//	                             once for a guest it does not supervise)
//	{"op":"release"}             answers "ok"; the supervisor then exits
//	                             as soon as it has no guest, without
//	                             lingering
//	{"op":"console","id":"ID"}   answers "ok" with a copy of the guest's
//	                             console (its pty master) attached
//	{"op":"adopt","args":[...],  takes over a running guest whose
//	 "pid":P,"start":S}          supervisor died, with its console
//	                             attached to the request; its init is not
//	                             the supervisor's child, so its exit status
//	                             is unknown. The answer is a ready line.
//
// A start's "ok" answer carries a copy of the guest's console too: the
// daemon keeps it, so that the console outlives a supervisor's death and
// goes to the next one (see docs/architecture.md).
type Request struct {
	Op    string   `json:"op"`
	Args  []string `json:"args,omitempty"`
	ID    string   `json:"id,omitempty"`
	PID   int      `json:"pid,omitempty"`
	Start uint64   `json:"start,omitempty"`
}

// Answers other than a ready line.
const (
	AnswerRetry = "retry"
	AnswerEnded = "ended"
	AnswerOK    = "ok"
)

// SupervisorConfig is what a supervisor needs.
type SupervisorConfig struct {
	Dir    string        // socket, lock and log; made 0700
	Linger time.Duration // how long to wait for a guest once none is left
}

// supervisor runs the containers of one daemon, each as a polyvisor-monitor
// of its own would (see package doc), in one process: one Go runtime's
// fixed cost for all the guests instead of one per guest. Guests outlive
// it, as they outlive a monitor: should it die, their consoles hang up and
// their exit statuses are lost, and the daemon deals with that as it does
// with a dead monitor.
type supervisor struct {
	cfg    SupervisorConfig
	log    *slog.Logger
	gc     *collector
	reaper *reaper
	stop   context.CancelFunc // ends serve, once idle
	wg     sync.WaitGroup     // connections and guests

	mu       sync.Mutex
	guests   map[string]*supervised
	starting int         // starts in progress
	closing  bool        // exiting: refuse starts
	idle     *time.Timer // armed while no guest is left
	linger   time.Duration
}

// supervised is one guest of the supervisor's.
type supervised struct {
	ended   chan struct{} // closed once the guest has ended
	console *os.File      // its pty master, once started
}

// Supervise runs a supervisor until it has had no guest for cfg.Linger;
// ready receives "ok PID" once it listens, or "error MESSAGE" (it may be
// nil). A second supervisor on the same directory fails at once. Like Run,
// it makes the process a child subreaper and handles SIGCHLD, SIGHUP,
// SIGINT and SIGTERM: run it only as the whole of a dedicated process.
func Supervise(cfg SupervisorConfig, ready io.WriteCloser) error {
	r := readiness{w: ready}
	s, ln, unlock, err := openSupervisor(cfg)
	if err != nil {
		r.fail(err)
		return err
	}
	defer unlock()
	sigs, stopSignals, err := takeChildren()
	defer stopSignals()
	if err != nil {
		r.fail(err)
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	s.stop = stop
	s.log.Info("supervisor starting", "pid", os.Getpid())
	r.ok(os.Getpid())
	s.mu.Lock()
	s.idleLocked()
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serve(ctx, ln)
	}()
	for done := false; !done; {
		select {
		case <-sigs.child:
			s.reaper.reap()
		case sig := <-sigs.ignored:
			s.log.Info("ignoring signal: the guests keep running", "signal", sig)
		case <-ctx.Done():
			done = true
		}
	}
	ln.Close()
	s.wg.Wait()
	s.log.Info("supervisor exiting: no guest left")
	return nil
}

// openSupervisor takes the directory's lock, writes the pid in it, and
// listens on the socket.
func openSupervisor(cfg SupervisorConfig) (_ *supervisor, _ *stream.Listener, unlock func(), err error) {
	if !filepath.IsAbs(cfg.Dir) {
		return nil, nil, nil, fmt.Errorf("--supervise %q must be an absolute path: %w", cfg.Dir, ErrInvalid)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create supervisor directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, SupervisorLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open supervisor lock: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, nil, nil, fmt.Errorf("another supervisor runs on %s: %w", cfg.Dir, err)
	}
	err = lock.Truncate(0)
	if err == nil {
		_, err = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("write supervisor lock: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(cfg.Dir, SupervisorLogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open supervisor log: %w", err)
	}
	// stderr is /dev/null; make it the log, so that a panic leaves its
	// trace where the rest of the story is.
	_ = unix.Dup3(int(logFile.Fd()), 2, 0)
	log := slog.New(slog.NewTextHandler(logFile, nil))
	ln, err := stream.Listen(filepath.Join(cfg.Dir, SupervisorSocketName))
	if err != nil {
		logFile.Close()
		return nil, nil, nil, err
	}
	s := &supervisor{
		cfg: cfg, log: log, gc: &collector{}, reaper: newReaper(log),
		guests: map[string]*supervised{}, linger: cfg.Linger,
	}
	unlock = func() {
		os.Remove(ln.Path())
		lock.Truncate(0)
		lock.Close()
		logFile.Close()
	}
	return s, ln, unlock, nil
}

// serve accepts clients until ctx ends.
func (s *supervisor) serve(ctx context.Context, ln *stream.Listener) {
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: wait rather than spin.
			s.log.Warn("accept client", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.answer(ctx, conn)
		}()
	}
}

// answer reads one request from conn and answers it.
func (s *supervisor) answer(ctx context.Context, conn *os.File) {
	// A client that connects and says nothing must not hold the
	// supervisor's exit.
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	line, files, err := stream.ReadLine(conn, maxRequest)
	if err != nil {
		s.log.Warn("read request", "err", err)
		return
	}
	// What a request brings is closed once answered, unless taken.
	defer func() { closeAll(files) }()
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		fmt.Fprintf(conn, "error request: %s\n", oneLine(err.Error()))
		return
	}
	reply := func(answer string, console *os.File) {
		var files []*os.File
		if console != nil {
			files = append(files, console)
		}
		if err := stream.WriteLine(conn, []byte(answer+"\n"), files...); err != nil {
			s.log.Warn("answer request", "op", req.Op, "err", err)
		}
	}
	switch req.Op {
	case "start":
		reply(s.start(ctx, req.Args))
	case "adopt":
		if len(files) != 1 {
			reply("error adopt: send the guest's console with the request", nil)
			return
		}
		console := files[0]
		files = nil // the adopted guest's, or closed by adopt
		reply(s.adopt(req, console), nil)
	case "console":
		s.mu.Lock()
		g := s.guests[req.ID]
		s.mu.Unlock()
		if g == nil || g.console == nil {
			reply("error console: guest "+req.ID+" is not supervised here", nil)
			return
		}
		reply(AnswerOK, g.console)
	case "wait":
		s.waitEnded(req.ID)
		reply(AnswerEnded, nil)
	case "release":
		s.mu.Lock()
		s.linger = 0
		s.idleLocked()
		s.mu.Unlock()
		reply(AnswerOK, nil)
	default:
		reply(fmt.Sprintf("error request: unknown op %q", req.Op), nil)
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// waitEnded returns once guest id is not supervised (any more). The
// supervisor does not exit before, having a guest.
func (s *supervisor) waitEnded(id string) {
	s.mu.Lock()
	g := s.guests[id]
	s.mu.Unlock()
	if g != nil {
		<-g.ended
	}
}

// start runs the container of args and answers with the ready line and
// the guest's console; the guest is then supervised until its init exits.
func (s *supervisor) start(ctx context.Context, args []string) (string, *os.File) {
	cfg, err := parseContainerArgs(args)
	if err != nil {
		return "error " + oneLine(err.Error()), nil
	}
	sg, refusal := s.reserve(cfg.ID)
	if sg == nil {
		return refusal, nil
	}
	m, err := s.newMonitor(cfg)
	var g *guest
	var exits <-chan ExitStatus
	if err == nil {
		g, exits, err = s.startGuest(ctx, m)
	}
	if err != nil {
		return s.failed(cfg.ID, sg, m, "start failed", err), nil
	}
	s.run(m, sg, g, func() (ExitStatus, error) { return <-exits, nil })
	return "ok " + strconv.Itoa(g.pid), g.console
}

// errExitUnknown ends the supervision of an adopted guest, whose init is
// not the supervisor's child: its exit status is the host's init's.
var errExitUnknown = errors.New("the guest's init has ended; its exit status is unknown, as it was adopted")

// adopt supervises a running guest whose supervisor died, on the console
// the daemon kept for it, which it takes: the guest's, or closed.
func (s *supervisor) adopt(req Request, console *os.File) string {
	g := &guest{pid: req.PID, console: console}
	cfg, err := parseContainerArgs(req.Args)
	init := procutil.Identity{PID: req.PID, Start: req.Start}
	if err == nil && !init.Alive() {
		err = fmt.Errorf("adopt %s: its init %d has ended", cfg.ID, req.PID)
	}
	if err != nil {
		g.close()
		return "error " + oneLine(err.Error())
	}
	sg, refusal := s.reserve(cfg.ID)
	if sg == nil {
		g.close()
		return refusal
	}
	m, err := s.newMonitor(cfg)
	if err == nil {
		g.log, err = openConsoleLog(cfg.Log, cfg.LogMax)
	}
	if err == nil {
		g.attach, err = stream.Listen(cfg.path(ConsoleSocketName))
	}
	if err != nil {
		g.close()
		return s.failed(cfg.ID, sg, m, "adoption failed", err)
	}
	m.log.Info("guest adopted", "initPid", g.pid)
	s.run(m, sg, g, func() (ExitStatus, error) {
		_ = init.Wait(context.Background()) // parked on its pidfd
		return ExitStatus{}, errExitUnknown
	})
	return "ok " + strconv.Itoa(g.pid)
}

// parseContainerArgs reads a start's or adoption's arguments: a
// container's, since a supervisor runs no command guest.
func parseContainerArgs(args []string) (Config, error) {
	cfg, err := ParseArgs(args)
	if err == nil && cfg.runsCommand() {
		err = fmt.Errorf("a supervisor runs containers only, not commands: %w", ErrInvalid)
	}
	return cfg, err
}

// failed ends a start or adoption of guest id that went wrong after its
// reservation, logging why in its monitor.log when there is one, and
// returns the error answer.
func (s *supervisor) failed(id string, sg *supervised, m *monitor, what string, err error) string {
	if m != nil {
		m.log.Error(what, "err", err)
		m.closeLog()
	}
	s.ended(id, sg)
	return "error " + oneLine(err.Error())
}

// reserve registers guest id as being started; nil and the refusal when
// the supervisor is exiting or has the guest already.
func (s *supervisor) reserve(id string) (*supervised, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch _, dup := s.guests[id]; {
	case s.closing:
		return nil, AnswerRetry
	case dup:
		return nil, "error " + oneLine(fmt.Sprintf("guest %s is supervised already: %v", id, ErrExists))
	}
	sg := &supervised{ended: make(chan struct{})}
	s.guests[id] = sg
	s.starting++
	s.stopIdleLocked()
	return sg, ""
}

// newMonitor is the supervision of one guest, logging to its run
// directory's monitor.log as a monitor of its own would.
func (s *supervisor) newMonitor(cfg Config) (*monitor, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	logFile, err := os.OpenFile(cfg.path(LogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open monitor log: %w", err)
	}
	return &monitor{
		cfg: cfg, gc: s.gc, reaper: s.reaper, logFile: logFile,
		log: slog.New(slog.NewTextHandler(logFile, nil)).With("id", cfg.ID, "supervisor", os.Getpid()),
	}, nil
}

// startGuest starts one container as a monitor would, and watches its init.
func (s *supervisor) startGuest(ctx context.Context, m *monitor) (*guest, <-chan ExitStatus, error) {
	m.log.Info("guest starting", "bundle", m.cfg.Bundle)
	// From runc's start until the init is watched, the reaper leaves the
	// init alone, whenever it ends.
	defer m.runningCommand()()
	started := time.Now()
	g, err := m.start(ctx)
	if err != nil {
		return nil, nil, err
	}
	exits, err := s.reaper.watch(g.pid)
	if err != nil {
		unix.Kill(g.pid, unix.SIGKILL)
		g.close()
		m.runcDelete()
		return nil, nil, err
	}
	m.log.Info("guest started", "initPid", g.pid, "duration", time.Since(started))
	// Once the start has settled, the garbage it made goes back.
	time.AfterFunc(firstTrimDelay, s.gc.quietIfIdle)
	return g, exits, nil
}

// run supervises a started or adopted guest until waitInit returns.
func (s *supervisor) run(m *monitor, sg *supervised, g *guest, waitInit func() (ExitStatus, error)) {
	s.mu.Lock()
	sg.console = g.console
	s.starting--
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.ended(m.cfg.ID, sg)
		defer m.closeLog()
		err := m.supervise(g, waitInit)
		m.log.Info("supervision ended", "err", err)
	}()
}

// ended forgets guest id, wakes those waiting for its end, and arms the
// idle timer if it was the last.
func (s *supervisor) ended(id string, sg *supervised) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.guests[id] == sg {
		delete(s.guests, id)
	}
	if sg.console == nil { // it never ran: its start counted
		s.starting--
	}
	close(sg.ended)
	s.idleLocked()
}

// idleLocked arms the exit for when no guest and no start is left.
func (s *supervisor) idleLocked() {
	if len(s.guests) > 0 || s.starting > 0 || s.closing {
		return
	}
	s.stopIdleLocked()
	s.idle = time.AfterFunc(s.linger, s.exitIfIdle)
}

func (s *supervisor) stopIdleLocked() {
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
}

// exitIfIdle ends the supervisor when it still has no guest.
func (s *supervisor) exitIfIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.guests) > 0 || s.starting > 0 || s.closing {
		return
	}
	s.closing = true
	s.stop()
}
