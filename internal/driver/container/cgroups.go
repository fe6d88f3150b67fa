package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// CgroupMode says how the host mounts cgroups: "v2" (unified), "v1" or
// "hybrid" (v1 controllers plus an empty v2 tree, as on this project's CI).
func CgroupMode() string {
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2"
	}
	if unix.Statfs(filepath.Join(cgroupRoot, "unified"), &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid"
	}
	return "v1"
}

// swapAccounting reports whether cgroup v1 can limit memory+swap.
func swapAccounting() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "memory", "memory.memsw.limit_in_bytes"))
	return err == nil
}

// cgroupDirs lists every directory that holds the cgroup at path (relative
// to each hierarchy's root): one per v1 controller, or the v2 one.
func cgroupDirs(path string) []string {
	if CgroupMode() == "v2" {
		return []string{filepath.Join(cgroupRoot, path)}
	}
	entries, err := os.ReadDir(cgroupRoot)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range entries {
		// Controller hierarchies, skipping the comma-joined aliases (cpu,cpuacct).
		if !e.IsDir() || strings.Contains(e.Name(), ",") {
			continue
		}
		dirs = append(dirs, filepath.Join(cgroupRoot, e.Name(), path))
	}
	return dirs
}

// removeCgroup removes the cgroup at path from every hierarchy. A cgroup
// that still holds processes is left alone and reported.
func removeCgroup(path string) error {
	var errs []error
	for _, dir := range cgroupDirs(path) {
		// Children first (runc may create none, systemd-style trees do).
		sub, _ := os.ReadDir(dir)
		for _, s := range sub {
			if s.IsDir() {
				if err := unix.Rmdir(filepath.Join(dir, s.Name())); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", filepath.Join(dir, s.Name()), err))
				}
			}
		}
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// childCgroups lists the names of the cgroups directly under parent, in
// any hierarchy.
func childCgroups(parent string) []string {
	seen := map[string]bool{}
	var names []string
	for _, dir := range cgroupDirs(parent) {
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
