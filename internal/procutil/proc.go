// Package procutil identifies host processes robustly: by pid and start
// time, so a reused pid is never mistaken for the process we started.
package procutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Identity names one process for as long as it lives.
type Identity struct {
	PID   int
	Start uint64 // clock ticks after boot, /proc/PID/stat field 22
}

// stat returns a process's state letter and start time.
func stat(pid int) (state byte, start uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses: split after the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// Identify reads the identity of a live process.
func Identify(pid int) (Identity, error) {
	_, start, err := stat(pid)
	if err != nil {
		return Identity{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return Identity{PID: pid, Start: start}, nil
}

// Alive reports whether the process still runs: same pid, same start time,
// and not a zombie.
func (id Identity) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	state, start, err := stat(id.PID)
	return err == nil && start == id.Start && state != 'Z' && state != 'X'
}

// Wait blocks until the process ends (nil) or ctx is done (ctx's error).
// It works for processes that are not our children (a guest adopted after
// a daemon restart).
//
// It waits on a pidfd registered with Go's netpoller: the goroutine parks
// until the kernel reports the process's exit, with no timer and no
// periodic check. A ctx that ends sets a deadline in the past on the
// pidfd, which wakes the parked read at once.
func (id Identity) Wait(ctx context.Context) error {
	pidfd, err := id.open()
	if errors.Is(err, errEnded) {
		return nil
	}
	if err != nil {
		return err
	}
	defer pidfd.Close()
	// The pidfd must be on the netpoller, or Read below would spin.
	if err := pidfd.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("wait for process %d: pidfd not pollable: %w", id.PID, err)
	}
	conn, err := pidfd.SyscallConn()
	if err != nil {
		return fmt.Errorf("wait for process %d: %w", id.PID, err)
	}
	stop := context.AfterFunc(ctx, func() { pidfd.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var pollErr error
	err = conn.Read(func(fd uintptr) bool {
		var ended bool
		ended, pollErr = exited(int(fd))
		return ended || pollErr != nil
	})
	switch {
	case pollErr != nil:
		return fmt.Errorf("wait for process %d: %w", id.PID, pollErr)
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("wait for process %d: %w", id.PID, err)
	}
	return nil
}

// errEnded says the process named by an Identity is no longer there.
var errEnded = errors.New("process ended")

// open returns a non-blocking pidfd for the process, or errEnded when it
// has ended or its pid now belongs to another process.
func (id Identity) open() (*os.File, error) {
	if id.PID <= 0 {
		return nil, errEnded
	}
	fd, err := unix.PidfdOpen(id.PID, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, errEnded
	}
	if err != nil {
		return nil, fmt.Errorf("wait for process %d: pidfd_open: %w", id.PID, err)
	}
	// os.NewFile puts a non-blocking descriptor on the netpoller.
	pidfd := os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(id.PID))
	// The pidfd names whoever held the pid when it was opened. If our
	// process still holds it now (same start time), that was ours: a pid
	// is not reused while its process, zombie included, exists.
	if !id.Alive() {
		pidfd.Close()
		return nil, errEnded
	}
	return pidfd, nil
}

// exited reports, without blocking, whether a pidfd's process has exited:
// the kernel makes a pidfd readable then.
func exited(pidfd int) (bool, error) {
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0) // a zero timeout only asks; it never sleeps
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n > 0, err
	}
}

// Signal sends sig to the process if it is still the same process.
func (id Identity) Signal(sig unix.Signal) error {
	if !id.Alive() {
		return nil
	}
	if err := unix.Kill(id.PID, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d to %d: %w", sig, id.PID, err)
	}
	return nil
}
