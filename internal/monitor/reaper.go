package monitor

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper reaps a supervisor's children: its guests' inits, which become
// its children when runc exits (the supervisor is their subreaper), and
// any orphan reparented to it. runc itself is waited for by os/exec: while
// a runc command runs, the reaper waits for the inits it watches by pid
// only, so that wait4(-1) does not take runc's exit from under os/exec.
type reaper struct {
	log *slog.Logger

	mu       sync.Mutex
	commands int                       // runc commands running
	watched  map[int]chan<- ExitStatus // init pid: where its exit goes
}

func newReaper(log *slog.Logger) *reaper {
	return &reaper{log: log, watched: map[int]chan<- ExitStatus{}}
}

// commandStarts counts in a runc command; commandEnded counts it out.
// Watch an init between the two, so that it is never reaped unwatched.
func (r *reaper) commandStarts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commands++
}

func (r *reaper) commandEnded() {
	r.mu.Lock()
	r.commands--
	r.mu.Unlock()
	// Children that ended while the command ran were left for later.
	r.reap()
}

// errNotChild reports an init that the supervisor cannot wait for.
var errNotChild = errors.New("it is not a child of the supervisor")

// watch has pid's exit sent on the returned channel once it is reaped. It
// fails when pid is not the supervisor's child: nothing would report its
// end.
func (r *reaper) watch(pid int) (<-chan ExitStatus, error) {
	ch := make(chan ExitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws unix.WaitStatus
	wpid, err := wait4(pid, &ws)
	switch {
	case err != nil:
		return nil, fmt.Errorf("wait for guest init %d: %w", pid, errNotChild)
	case wpid == pid: // it has ended already
		ch <- exitStatusOf(pid, ws, time.Now())
	default:
		r.watched[pid] = ch
	}
	return ch, nil
}

// reap collects the children that have ended, on SIGCHLD and after each
// runc command, and sends each watched init's exit to its guest.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.commands > 0 {
		for pid, ch := range r.watched {
			var ws unix.WaitStatus
			if wpid, err := wait4(pid, &ws); err == nil && wpid == pid {
				ch <- exitStatusOf(pid, ws, time.Now())
				delete(r.watched, pid)
			}
		}
		return
	}
	for {
		var ws unix.WaitStatus
		wpid, err := wait4(-1, &ws)
		if err != nil || wpid == 0 {
			return
		}
		if ch, ok := r.watched[wpid]; ok {
			ch <- exitStatusOf(wpid, ws, time.Now())
			delete(r.watched, wpid)
		} else {
			r.log.Debug("reaped orphan", "pid", wpid)
		}
	}
}

// wait4 is a non-blocking wait4 that retries on EINTR.
func wait4(pid int, ws *unix.WaitStatus) (int, error) {
	for {
		wpid, err := unix.Wait4(pid, ws, unix.WNOHANG, nil)
		if !errors.Is(err, unix.EINTR) {
			return wpid, err
		}
	}
}
