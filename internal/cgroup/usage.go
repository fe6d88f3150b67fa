package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Usage is what the members of a cgroup have used: CPU time since the
// cgroup was made, and memory now.
type Usage struct {
	CPU time.Duration
	// Memory is the working set: what the members hold, less the page
	// cache the kernel may drop at once (inactive files), as `kubectl top`
	// and cadvisor count it.
	Memory int64
}

// ReadUsage reads the usage of the cgroup at path (relative to each
// hierarchy's root), on cgroup v1, hybrid and v2 hosts.
func ReadUsage(path string) (Usage, error) {
	if Mode() == "v2" {
		return readUsageV2(filepath.Join(Root, path))
	}
	return readUsageV1(filepath.Join(Root, "cpuacct", path), filepath.Join(Root, "memory", path))
}

func readUsageV1(cpuacct, memory string) (Usage, error) {
	ns, err := readInt(filepath.Join(cpuacct, "cpuacct.usage"))
	if err != nil {
		return Usage{}, err
	}
	used, err := readInt(filepath.Join(memory, "memory.usage_in_bytes"))
	if err != nil {
		return Usage{}, err
	}
	stat, err := readKeyed(filepath.Join(memory, "memory.stat"))
	if err != nil {
		return Usage{}, err
	}
	return Usage{CPU: time.Duration(ns), Memory: workingSet(used, stat["total_inactive_file"])}, nil
}

func readUsageV2(dir string) (Usage, error) {
	cpu, err := readKeyed(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return Usage{}, err
	}
	used, err := readInt(filepath.Join(dir, "memory.current"))
	if err != nil {
		return Usage{}, err
	}
	stat, err := readKeyed(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return Usage{}, err
	}
	return Usage{CPU: time.Duration(cpu["usage_usec"]) * time.Microsecond, Memory: workingSet(used, stat["inactive_file"])}, nil
}

func workingSet(used, inactiveFile int64) int64 {
	return max(used-inactiveFile, 0)
}

// readInt reads a file holding one integer.
func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup usage: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup usage: %s: %w", path, err)
	}
	return n, nil
}

// readKeyed reads a file of "key value" lines (memory.stat, cpu.stat).
func readKeyed(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup usage: %w", err)
	}
	defer f.Close()
	return parseKeyed(f)
}

func parseKeyed(f io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			out[key] = n
		}
	}
	return out, sc.Err()
}
