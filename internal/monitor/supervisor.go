package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

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

// maxRequest bounds one request line.
const maxRequest = 64 << 10

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
type Request struct {
	Op   string   `json:"op"`
	Args []string `json:"args,omitempty"`
	ID   string   `json:"id,omitempty"`
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
	guests   map[string]chan struct{} // id: closed once the guest has ended
	starting int                      // starts in progress
	closing  bool                     // exiting: refuse starts
	idle     *time.Timer              // armed while no guest is left
	linger   time.Duration
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
	sigs := signals{child: make(chan os.Signal, 1), ignored: make(chan os.Signal, 4)}
	signal.Notify(sigs.child, unix.SIGCHLD)
	signal.Notify(sigs.ignored, unix.SIGHUP, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs.child)
	defer signal.Stop(sigs.ignored)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		err = fmt.Errorf("become child subreaper: %w", err)
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
	if err := lock.Truncate(0); err == nil {
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
		guests: map[string]chan struct{}{}, linger: cfg.Linger,
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
	line, err := bufio.NewReader(io.LimitReader(conn, maxRequest)).ReadBytes('\n')
	if err != nil {
		s.log.Warn("read request", "err", err)
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		fmt.Fprintf(conn, "error request: %s\n", oneLine(err.Error()))
		return
	}
	switch req.Op {
	case "start":
		fmt.Fprintln(conn, s.start(ctx, req.Args))
	case "wait":
		s.waitEnded(req.ID)
		fmt.Fprintln(conn, AnswerEnded)
	case "release":
		s.mu.Lock()
		s.linger = 0
		s.idleLocked()
		s.mu.Unlock()
		fmt.Fprintln(conn, AnswerOK)
	default:
		fmt.Fprintf(conn, "error request: unknown op %q\n", req.Op)
	}
}

// waitEnded returns once guest id is not supervised (any more). The
// supervisor does not exit before, having a guest.
func (s *supervisor) waitEnded(id string) {
	s.mu.Lock()
	ended, ok := s.guests[id]
	s.mu.Unlock()
	if ok {
		<-ended
	}
}

// start runs the container of args and answers with the ready line; the
// guest is then supervised until its init exits.
func (s *supervisor) start(ctx context.Context, args []string) string {
	cfg, err := ParseArgs(args)
	if err == nil && cfg.runsCommand() {
		err = fmt.Errorf("a supervisor runs containers only, not commands: %w", ErrInvalid)
	}
	if err != nil {
		return "error " + oneLine(err.Error())
	}
	ended := make(chan struct{})
	s.mu.Lock()
	switch _, dup := s.guests[cfg.ID]; {
	case s.closing:
		s.mu.Unlock()
		return AnswerRetry
	case dup:
		s.mu.Unlock()
		return "error " + oneLine(fmt.Sprintf("guest %s is supervised already: %v", cfg.ID, ErrExists))
	}
	s.guests[cfg.ID] = ended
	s.starting++
	s.stopIdleLocked()
	s.mu.Unlock()

	m, exits, g, err := s.startGuest(ctx, cfg)
	s.mu.Lock()
	s.starting--
	s.mu.Unlock()
	if err != nil {
		s.ended(cfg.ID, ended)
		return "error " + oneLine(err.Error())
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.ended(cfg.ID, ended)
		m.supervise(g, func() (ExitStatus, error) { return <-exits, nil })
		m.log.Info("supervision ended")
	}()
	return "ok " + strconv.Itoa(g.pid)
}

// startGuest starts one container as a monitor would, and watches its init.
func (s *supervisor) startGuest(ctx context.Context, cfg Config) (*monitor, <-chan ExitStatus, *guest, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create run directory: %w", err)
	}
	logFile, err := os.OpenFile(cfg.path(LogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open monitor log: %w", err)
	}
	m := &monitor{cfg: cfg, log: slog.New(slog.NewTextHandler(logFile, nil)).With("id", cfg.ID, "supervisor", os.Getpid()), gc: s.gc, reaper: s.reaper}
	m.log.Info("guest starting", "bundle", cfg.Bundle)
	// From runc's start until the init is watched, the reaper leaves the
	// init alone, whenever it ends.
	ended := m.runningCommand()
	defer ended()
	started := time.Now()
	g, err := m.start(ctx)
	var exits <-chan ExitStatus
	if err == nil {
		if exits, err = s.reaper.watch(g.pid); err != nil {
			unix.Kill(g.pid, unix.SIGKILL)
			g.close()
			m.runcDelete()
		}
	}
	if err != nil {
		m.log.Error("start failed", "err", err)
		logFile.Close()
		return nil, nil, nil, err
	}
	g.closers = append(g.closers, logFile) // the guest's monitor.log
	m.log.Info("guest started", "initPid", g.pid, "duration", time.Since(started))
	// Once the start has settled, the garbage it made goes back.
	time.AfterFunc(firstTrimDelay, s.gc.quietIfIdle)
	return m, exits, g, nil
}

// ended forgets guest id, wakes those waiting for its end, and arms the
// idle timer if it was the last.
func (s *supervisor) ended(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.guests[id] == ch {
		delete(s.guests, id)
	}
	close(ch)
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
