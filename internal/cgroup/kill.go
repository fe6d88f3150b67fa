package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// freezeWait bounds how long Kill waits for a cgroup v1 freeze to
// complete. A process stuck in the kernel (a vfork parent, an I/O wait)
// can hold the freezer in FREEZING for as long as it likes; the kill
// goes on without it rather than let a guest hold its own end back.
const freezeWait = 200 * time.Millisecond

// killRounds bounds how often Kill freezes and kills again when it finds
// a process it has not ended yet (one that was being born as it listed).
const killRounds = 3

// Kill ends every process in the cgroup at path with SIGKILL.
//
// On cgroup v2 the kernel does it in one step (cgroup.kill). On v1 (and
// hybrid hosts) the cgroup is frozen first, so that no process can fork a
// child the listing would miss, every listed process is sent SIGKILL
// through a pidfd after checking it is still in the cgroup (never a pid
// that was freed and reused), and the cgroup is thawed, which is when the
// frozen processes die. A cgroup that does not exist holds nothing to
// kill. Kill returns once the signals are sent; the processes leave the
// cgroup as their parents reap them.
func Kill(ctx context.Context, path string) error { return kill(ctx, path, nil) }

// kill is Kill; frozen, when set, is called with the freezer's directory
// and the processes found, before any is signalled (tests look at the
// freezer's state there).
func kill(ctx context.Context, path string, frozen func(dir string, pids []int)) error {
	if Mode() == "v2" {
		return killV2(path)
	}
	dir := filepath.Join(Root, "freezer", path)
	for range killRounds {
		// A cgroup whose processes have all ended is left alone: its
		// owner (runc, for a container) may be removing it right now.
		if !anyAlive(dir) {
			return nil
		}
		if err := freeze(ctx, dir); err != nil {
			return gone(path, err)
		}
		// Listed once frozen: a process forked while the freeze took hold
		// is frozen too, and in the list.
		pids, err := listProcs(dir)
		if err == nil && frozen != nil {
			frozen(dir, pids)
		}
		var errs []error
		if err == nil {
			for _, pid := range pids {
				if err := killMember(pid, path); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if terr := writeState(dir, "THAWED"); terr != nil {
			errs = append(errs, terr)
		}
		if err := errors.Join(err, errors.Join(errs...)); err != nil {
			return gone(path, err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// gone returns nil when err says the cgroup was removed while Kill worked
// on it (its processes ended and their owner removed it), else err with
// the cgroup's path.
func gone(path string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("kill cgroup %s: %w", path, err)
}

// killV2 writes cgroup.kill, which kills the whole subtree, forks in
// flight included (Linux 5.14 and later).
func killV2(path string) error {
	file := filepath.Join(Root, path, "cgroup.kill")
	if err := os.WriteFile(file, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill cgroup %s: %w", path, err)
	}
	return nil
}

// freeze asks the v1 freezer to freeze dir and waits, at most freezeWait,
// until it has.
func freeze(ctx context.Context, dir string) error {
	if err := writeState(dir, "FROZEN"); err != nil {
		return err
	}
	deadline := time.Now().Add(freezeWait)
	for {
		state, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, "freezer.state"), err)
		}
		if strings.TrimSpace(string(state)) == "FROZEN" || time.Now().After(deadline) || ctx.Err() != nil {
			return nil
		}
		// The freezer has no event to wait on in v1; it usually takes
		// well under a millisecond.
		time.Sleep(time.Millisecond)
	}
}

func writeState(dir, state string) error {
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte(state), 0); err != nil {
		return fmt.Errorf("write %s to %s: %w", state, filepath.Join(dir, "freezer.state"), err)
	}
	return nil
}

// listProcs reads the pids in the cgroup.procs of dir and of the cgroups
// directly below it (freezing dir freezes them too).
func listProcs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if more, err := os.ReadFile(filepath.Join(dir, e.Name(), "cgroup.procs")); err == nil {
				data = append(append(data, '\n'), more...)
			}
		}
	}
	var pids []int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// anyAlive reports whether dir's cgroup still lists a process that is not
// a zombie (a zombie has ended; its parent has yet to reap it).
func anyAlive(dir string) bool {
	pids, _ := listProcs(dir)
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' {
			return true
		}
	}
	return false
}

// killMember sends SIGKILL to pid if it is still a member of the freezer
// cgroup at path. The pidfd pins the process: if pid was freed and reused
// after the listing, the membership check fails or the signal goes to the
// ended process and is refused (ESRCH), never to the newcomer.
func killMember(pid int, path string) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !inFreezer(pid, path) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	return nil
}

// inFreezer reports whether /proc/PID/cgroup puts pid in the freezer
// cgroup at path, or below it.
func inFreezer(pid int, path string) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.Contains(","+parts[1]+",", ",freezer,") {
			continue
		}
		return parts[2] == path || strings.HasPrefix(parts[2], path+"/")
	}
	return false
}
