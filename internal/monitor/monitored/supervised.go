package monitored

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// spawnPatience bounds how long a new supervisor waits for an exiting one
// to let go of the directory's lock.
const spawnPatience = 5 * time.Second

// Supervisor starts containers under one polyvisor-monitor --supervise
// for all of a daemon's guests, starting it when none runs. The
// supervisor exits by itself once it has had no guest for a while, and a
// daemon that restarts finds a running one by its socket.
type Supervisor struct {
	// Monitor is the path of polyvisor-monitor.
	Monitor string
	// Dir is the supervisor's directory: socket, lock and log.
	Dir string
	// Linger, when not 0, replaces monitor.DefaultLinger.
	Linger time.Duration

	mu sync.Mutex // one spawn at a time
	// launched reaps the supervisors started here.
	launched Launcher
}

// Start runs the container of cfg under the supervisor; the status
// identifies the guest's init, and as its monitor the supervisor, which
// every container of the daemon shares.
func (s *Supervisor) Start(ctx context.Context, cfg monitor.Config) (guest.Status, error) {
	req := monitor.Request{Op: "start", Args: cfg.Args()}
	for range 3 {
		line, err := s.ask(ctx, req, true)
		if err != nil {
			return guest.Status{}, err
		}
		if line == monitor.AnswerRetry {
			continue // it was exiting; the next ask starts another
		}
		pid, err := monitor.ParseReady(line)
		if err != nil {
			return guest.Status{}, err
		}
		sup, err := s.identify()
		if err != nil {
			return guest.Status{}, err
		}
		return runningStatus(guest.Status{MonitorPID: sup.PID, MonitorStart: sup.Start}, pid, cfg.ID)
	}
	return guest.Status{}, errors.New("start monitor: the supervisor kept exiting")
}

// WaitEnded returns once the supervisor has recorded the exit of guest id
// and deleted its container, at once when it does not supervise it (or
// none runs).
func (s *Supervisor) WaitEnded(ctx context.Context, id string) error {
	line, err := s.ask(ctx, monitor.Request{Op: "wait", ID: id}, false)
	if err != nil || line == monitor.AnswerEnded {
		return err
	}
	return fmt.Errorf("wait for the end of %s: the supervisor answered %q", id, line)
}

// Release tells the supervisor to exit as soon as it has no guest, and
// waits for the one started here to be reaped: a daemon's shutdown.
func (s *Supervisor) Release(ctx context.Context) {
	s.ask(ctx, monitor.Request{Op: "release"}, false)
	s.launched.Wait()
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

// ask sends req and reads the one-line answer; with spawn, it starts a
// supervisor if none runs. Without, no supervisor means an empty answer.
func (s *Supervisor) ask(ctx context.Context, req monitor.Request, spawn bool) (string, error) {
	conn, err := s.dial(ctx)
	if errors.Is(err, errNotRunning) && spawn {
		if err = s.spawn(ctx); err == nil {
			conn, err = s.dial(ctx)
		}
	}
	if errors.Is(err, errNotRunning) && !spawn {
		return monitor.AnswerEnded, nil
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	data, _ := json.Marshal(req) // strings only: it cannot fail
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return "", fmt.Errorf("supervisor: send %s: %w", req.Op, err)
	}
	// A start waits on runc (bounded by ReadyTimeout); a wait on the
	// guest's last moments; either way the caller's ctx bounds it too.
	line, err := readReady(ctx, conn)
	if err != nil {
		return "", fmt.Errorf("supervisor: %s: %w", req.Op, err)
	}
	return line, nil
}

// dial connects to the supervisor's socket; errNotRunning when none
// listens there.
func (s *Supervisor) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(s.Dir, monitor.SupervisorSocketName))
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, errNotRunning
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the supervisor: %w", err)
	}
	return conn, nil
}

// spawn starts a supervisor, unless one has started meanwhile, and waits
// until it listens. One that is exiting still holds the lock for a
// moment; the new one is tried again until it lets go.
func (s *Supervisor) spawn(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	args := []string{"--supervise", s.Dir}
	if s.Linger != 0 {
		args = append(args, "--linger", s.Linger.String())
	}
	cmd := exec.Command(s.Monitor, args...)
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	// Its own session: the daemon's terminal or process group ending must
	// not reach it, nor through it the guests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	id, err := procutil.Identify(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("start supervisor: %w", err)
	}
	s.launched.reapLater(cmd, id)
	line, err := readReady(ctx, readyR)
	if err != nil {
		cmd.Process.Kill()
		return fmt.Errorf("start supervisor: %w", err)
	}
	if _, err := monitor.ParseReady(line); err != nil {
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
