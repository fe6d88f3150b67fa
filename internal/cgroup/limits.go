package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits are what a cgroup holds its processes to; a zero field sets no
// limit.
type Limits struct {
	Memory int64 // bytes, swap included where the host accounts for it
	CPUs   int   // whole cpus' worth of time in each period
}

// CPUPeriod is the CFS period, in microseconds, that the cpu limit is a
// share of: the kernel's default, and runc's.
const CPUPeriod = 100000

// Create makes the cgroup at path (as "/parent/name") and holds it to
// lim: in the memory, cpu and cpuacct hierarchies on cgroup v1 and hybrid
// hosts, in the unified tree on v2 with its controllers enabled down to
// it. A cgroup of that path left by a crash is replaced; a failed Create
// leaves nothing.
func Create(path string, lim Limits) (err error) {
	if err := Remove(path); err != nil {
		return fmt.Errorf("create cgroup %s: an older one is still in use: %w", path, err)
	}
	defer func() {
		if err != nil {
			Remove(path)
		}
	}()
	if Mode() == "v2" {
		return createV2(path, lim)
	}
	return createV1(path, lim)
}

func createV1(path string, lim Limits) error {
	// The two hierarchies that hold its limits, and cpuacct for its usage.
	for _, h := range []string{"memory", "cpu", "cpuacct"} {
		if _, err := os.Stat(filepath.Join(Root, h)); err != nil {
			return fmt.Errorf("create cgroup %s: no %s hierarchy under %s: %w", path, h, Root, err)
		}
		if err := os.MkdirAll(filepath.Join(Root, h, path), 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", path, err)
		}
	}
	var settings []setting
	if lim.Memory > 0 {
		// memsw bounds memory and swap together: set after memory, which it
		// may not be under.
		settings = append(settings, setting{"memory", "memory.limit_in_bytes", itoa(lim.Memory)})
		if SwapAccounting() {
			settings = append(settings, setting{"memory", "memory.memsw.limit_in_bytes", itoa(lim.Memory)})
		}
	}
	if lim.CPUs > 0 {
		settings = append(settings,
			setting{"cpu", "cpu.cfs_period_us", itoa(CPUPeriod)},
			setting{"cpu", "cpu.cfs_quota_us", itoa(int64(lim.CPUs) * CPUPeriod)})
	}
	return apply(path, settings)
}

func createV2(path string, lim Limits) error {
	// A v2 controller works in a cgroup only when every ancestor enables it
	// for its children.
	dir := Root
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0); err != nil {
			return fmt.Errorf("create cgroup %s: enable memory and cpu under %s: %w", path, dir, err)
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", path, err)
		}
	}
	var settings []setting
	if lim.Memory > 0 {
		settings = append(settings, setting{"", "memory.max", itoa(lim.Memory)})
		if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
			settings = append(settings, setting{"", "memory.swap.max", "0"})
		}
	}
	if lim.CPUs > 0 {
		settings = append(settings, setting{"", "cpu.max", itoa(int64(lim.CPUs)*CPUPeriod) + " " + itoa(CPUPeriod)})
	}
	return apply(path, settings)
}

// setting is one value written to a cgroup's file, in a v1 hierarchy
// ("" on v2).
type setting struct{ hierarchy, file, value string }

func apply(path string, settings []setting) error {
	for _, s := range settings {
		file := filepath.Join(Root, s.hierarchy, path, s.file)
		if err := os.WriteFile(file, []byte(s.value), 0); err != nil {
			return fmt.Errorf("create cgroup %s: set %s to %s: %w", path, s.file, s.value, err)
		}
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Join moves the calling process into the cgroup at path, in every
// hierarchy that has it, and returns what moves it back. A child it starts
// in between is born in the cgroup: that is how the monitor starts QEMU in
// the guest's cgroup before QEMU runs one instruction, cgroup v1 having no
// way to start a process straight into a cgroup.
func Join(path string) (leave func() error, err error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("join cgroup %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	var back []string // where the process was, in each hierarchy it left
	leave = func() error {
		var errs []error
		for _, dir := range back {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
				errs = append(errs, fmt.Errorf("leave cgroup %s: %w", path, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		// ID:CONTROLLERS:PATH; v2 is the line with no controllers.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount := mountOf(parts[1])
		target := filepath.Join(mount, path)
		if _, err := os.Stat(filepath.Join(target, "cgroup.procs")); err != nil {
			continue // a hierarchy Create did not use
		}
		if err := os.WriteFile(filepath.Join(target, "cgroup.procs"), pid, 0); err != nil {
			leave()
			return nil, fmt.Errorf("join cgroup %s: %w", target, err)
		}
		back = append(back, filepath.Join(mount, parts[2]))
	}
	if len(back) == 0 {
		return nil, fmt.Errorf("join cgroup %s: %w", path, os.ErrNotExist)
	}
	return leave, nil
}

// mountOf returns where the hierarchy of a /proc/PID/cgroup line's
// controllers field is mounted.
func mountOf(controllers string) string {
	switch {
	case controllers == "" && Mode() == "hybrid":
		return filepath.Join(Root, "unified")
	case controllers == "":
		return Root
	default:
		return filepath.Join(Root, strings.TrimPrefix(controllers, "name="))
	}
}
