// Package cgroup makes, finds and removes the cgroups polyvisor's guests
// run in, on cgroup v1, v2 and hybrid hosts alike. runc makes a
// container's cgroup from its OCI spec; a VM's QEMU has no runtime to do
// that, so the driver makes it here and the monitor starts QEMU inside it.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Root is where the host mounts its cgroup hierarchies.
const Root = "/sys/fs/cgroup"

// Mode says how the host mounts cgroups: "v2" (unified), "v1" or
// "hybrid" (v1 controllers plus an empty v2 tree, as on this project's CI).
func Mode() string {
	var st unix.Statfs_t
	if unix.Statfs(Root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2"
	}
	if unix.Statfs(filepath.Join(Root, "unified"), &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid"
	}
	return "v1"
}

// SwapAccounting reports whether cgroup v1 can limit memory+swap.
func SwapAccounting() bool {
	_, err := os.Stat(filepath.Join(Root, "memory", "memory.memsw.limit_in_bytes"))
	return err == nil
}

// dirs lists every directory that holds the cgroup at path (relative to
// each hierarchy's root): one per v1 hierarchy, or the v2 one.
func dirs(path string) []string {
	if Mode() == "v2" {
		return []string{filepath.Join(Root, path)}
	}
	entries, err := os.ReadDir(Root)
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range entries {
		// Each hierarchy once: comma-joined mounts (cpu,cpuacct) are
		// reached through their per-controller links, which are followed.
		if strings.Contains(e.Name(), ",") {
			continue
		}
		if fi, err := os.Stat(filepath.Join(Root, e.Name())); err != nil || !fi.IsDir() {
			continue
		}
		found = append(found, filepath.Join(Root, e.Name(), path))
	}
	return found
}

// Remove removes the cgroup at path from every hierarchy. A cgroup that
// still holds processes once reapGrace has passed is left alone and
// reported.
func Remove(path string) error { return remove(path, time.Now().Add(reapGrace)) }

// reapGrace bounds how long removing a cgroup waits for processes that
// have just ended to leave it. A killed process stays in its cgroup until
// its parent reaps it: QEMU until its monitor does, or, when the monitor
// was killed as well (a forced delete ends every process of the guest),
// until init does.
const reapGrace = 3 * time.Second

// remove removes the cgroup at path from every hierarchy; until deadline
// it retries a cgroup that is busy (see rmdir).
func remove(path string, deadline time.Time) error {
	var errs []error
	for _, dir := range dirs(path) {
		// Children first (runc may create none, systemd-style trees do).
		sub, _ := os.ReadDir(dir)
		for _, s := range sub {
			if s.IsDir() {
				if err := unix.Rmdir(filepath.Join(dir, s.Name())); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", filepath.Join(dir, s.Name()), err))
				}
			}
		}
		if err := rmdir(dir, deadline); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// rmdir removes a cgroup directory, retrying while it is busy until
// deadline: a process killed a moment ago stays in its cgroup until its
// parent reaps it, and one whose parent died too (a guest whose monitor
// was killed) waits for init to. cgroup v1 tells no one when a cgroup
// empties, hence the short retries.
func rmdir(dir string, deadline time.Time) error {
	for {
		err := unix.Rmdir(dir)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Children lists the names of the cgroups directly under parent, in any
// hierarchy.
func Children(parent string) []string {
	seen := map[string]bool{}
	var names []string
	for _, dir := range dirs(parent) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				names = append(names, e.Name())
			}
		}
	}
	return names
}

// RemoveOrphans removes the cgroups under parent whose names are not
// live, and returns the paths it removed.
func RemoveOrphans(parent string, live map[string]bool) ([]string, error) {
	var removed []string
	var errs []error
	deadline := time.Now().Add(reapGrace)
	for _, name := range Children(parent) {
		if !live[name] {
			removed = append(removed, parent+"/"+name)
			errs = append(errs, remove(parent+"/"+name, deadline))
		}
	}
	return removed, errors.Join(errs...)
}
