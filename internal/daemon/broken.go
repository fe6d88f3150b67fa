package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// deleteBroken removes a guest whose definition does not load. No driver
// can act on it, so only its directory goes, and only once nothing of it
// runs: its files would otherwise vanish under a live process.
func (d *Daemon) deleteBroken(name string, force bool) (api.Operation, error) {
	if !force {
		return api.Operation{}, fmt.Errorf("guest %s is broken: %w; fix its guest.yaml and restart the daemon, or remove it with 'polyvisor delete --force %s'", name, d.guests.brokenCause(name), name)
	}
	cause := d.guests.claimBroken(name)
	if cause == nil {
		return api.Operation{}, fmt.Errorf("guest %s: %w: see 'polyvisor list'", name, api.ErrNotFound)
	}
	rec, readable := readRecord(filepath.Join(d.layout.GuestDir(name), guest.FileName))
	if err := d.checkNothingRuns(name, rec, readable); err != nil {
		d.guests.putBack(name, cause)
		return api.Operation{}, err
	}
	return d.ops.start(d.ctx, "delete", name, func(ctx context.Context, _ func(api.Progress)) error {
		dir := d.layout.GuestDir(name)
		if err := fsutil.RemoveAllAtomic(dir); err != nil {
			if _, statErr := os.Lstat(dir); statErr == nil {
				d.guests.putBack(name, cause)
				return fmt.Errorf("delete %s: %w", name, err)
			}
			// Renamed away: the guest is gone, the next start sweeps the rest.
			d.log.Warn("removing a deleted guest's files", "guest", name, "err", err)
		}
		d.guests.release(name, nil)
		if readable {
			d.unpublish(ctx, &guest.Definition{Name: name, Networks: validNames(rec.Networks)})
		}
		d.log.Info("broken guest deleted", "guest", name, "was", cause)
		return nil
	}), nil
}

// record is what a guest.yaml that does not load may still tell, read
// without its strictness: which processes it ran, which networks it joined.
type record struct {
	Networks []string     `yaml:"networks"`
	Status   guest.Status `yaml:"status"`
}

func readRecord(path string) (record, bool) {
	var rec record
	data, err := os.ReadFile(path)
	if err != nil || yaml.Unmarshal(data, &rec) != nil {
		return record{}, false
	}
	return rec, true
}

// validNames drops what is not a name: a hand-edited file may hold paths.
func validNames(names []string) []string {
	var out []string
	for _, n := range names {
		if guest.ValidateName(n) == nil {
			out = append(out, n)
		}
	}
	return out
}

// checkNothingRuns refuses while a process of the guest lives, and when it
// cannot tell. It trusts processes, not files: the pids the definition
// recorded (its init's, with its start time), then any process in the
// guest's cgroup or naming its run dir (its monitor, QEMU's sockets), then what a
// runtime leaves only while a guest is up: its mounted root tree, its
// runtime state, its init's pid file.
func (d *Daemon) checkNothingRuns(name string, rec record, readable bool) error {
	// Not the monitor's pid: containers share the supervisor, which lives
	// on after any one guest; a VM's own monitor names the run dir.
	if init := (procutil.Identity{PID: rec.Status.InitPID, Start: rec.Status.InitStart}); readable && init.Alive() {
		return stillRuns(name, init.PID)
	}
	pid, err := d.processOf(name)
	if err != nil {
		return d.cannotTell(name, err.Error())
	}
	if pid != 0 {
		return stillRuns(name, pid)
	}
	points, err := fsutil.MountsUnder(d.layout.GuestDir(name))
	if err != nil {
		return d.cannotTell(name, err.Error())
	}
	if len(points) > 0 {
		return fmt.Errorf("guest %s: %w: its root tree is still mounted at %s; umount it, then delete --force again", name, api.ErrConflict, points[0])
	}
	if state := filepath.Join(d.layout.RuncRoot(), name); exists(state) {
		return d.cannotTell(name, "its runtime state remains in "+state)
	}
	if pidFile := filepath.Join(d.layout.GuestRunDir(name), monitor.InitPidName); pidLives(pidFile) {
		return d.cannotTell(name, "the process in "+pidFile+" lives")
	}
	return nil
}

// stillRuns is the refusal when a process of a broken guest lives.
func stillRuns(name string, pid int) error {
	return fmt.Errorf("guest %s: %w: its process %d still runs; stop it (kill %d), then delete --force again", name, api.ErrConflict, pid, pid)
}

// cannotTell is the refusal when whether the guest runs is unknown: the
// user, who can look, removes it by hand.
func (d *Daemon) cannotTell(name, why string) error {
	return fmt.Errorf("guest %s: %w: cannot tell whether it still runs (%s); stop what runs of it, then remove %s and %s by hand and restart the daemon", name, api.ErrConflict, why, d.layout.GuestDir(name), d.layout.GuestRunDir(name))
}

// processOf returns a live process in the guest's cgroup (a container's
// processes, a VM's QEMU) or whose command line names its run dir (its
// monitor, its QEMU), or 0.
func (d *Daemon) processOf(name string) (int, error) {
	pids, err := d.processesOf(name)
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	return pids[0], nil
}

// processesOf returns every live process in the guest's cgroup or whose
// command line names its run dir.
func (d *Daemon) processesOf(name string) ([]int, error) {
	cgroup := d.layout.GuestCgroup(name)
	runDir := d.layout.GuestRunDir(name)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if inCgroup(pid, cgroup) || namesDir(pid, runDir) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// inCgroup reports whether process pid is in cgroup or below it, in any
// hierarchy (v1 lines "ID:CONTROLLERS:PATH", v2 "0::PATH").
func inCgroup(pid int, cgroup string) bool {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[2] == cgroup || strings.HasPrefix(parts[2], cgroup+"/")) {
			return true
		}
	}
	return false
}

// namesDir reports whether an argument of process pid is dir or a path in it.
func namesDir(pid int, dir string) bool {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	for _, arg := range bytes.Split(data, []byte{0}) {
		if string(arg) == dir || bytes.Contains(arg, []byte(dir+"/")) {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// pidLives reports whether the pid in file names a live process. Without
// a start time it cannot be told from a reused pid, so it only ever
// makes the check more careful.
func pidLives(file string) bool {
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	id, err := procutil.Identify(pid)
	return err == nil && id.Alive()
}
