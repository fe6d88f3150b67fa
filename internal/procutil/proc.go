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

// Wait blocks until the process ends or ctx is done. It works for processes
// that are not our children (a guest adopted after a daemon restart) by
// polling a pidfd.
func (id Identity) Wait(ctx context.Context) error {
	fd, err := unix.PidfdOpen(id.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return id.poll(ctx)
	}
	defer unix.Close(fd)
	if !id.Alive() { // the pid may have been reused before we opened it
		return nil
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for process %d: %w", id.PID, err)
		}
		if n > 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// poll is Wait's fallback for kernels without pidfd.
func (id Identity) poll(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for id.Alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
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
