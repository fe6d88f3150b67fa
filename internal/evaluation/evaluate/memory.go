package evaluate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// treePSS adds up the proportional set size of the processes treePIDs
// lists: for a VM, its monitor and QEMU; for containers, the supervisor
// that runs them all and under it their processes. PSS shares pages among
// the processes that map them, so guests sharing a template's pages are
// not counted twice.
func treePSS(roots, skip []int) (int64, error) {
	pids, err := treePIDs(roots, skip)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, pid := range pids {
		pss, err := processPSS(pid)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue // it ended meanwhile
			}
			return 0, err
		}
		total += pss
	}
	return total, nil
}

// treePIDs lists roots and every process descended from them, each once
// however many roots lead to it (one supervisor is the monitor of every
// container of a daemon), leaving out skip and what descends from it: the
// processes of guests that run under the same supervisor but are not
// being measured.
func treePIDs(roots, skip []int) ([]int, error) {
	children := map[int][]int{}
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	for _, stat := range procs {
		data, err := os.ReadFile(stat)
		if err != nil {
			continue // it ended meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(data)
		rest := s[strings.LastIndexByte(s, ')')+1:]
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
	}
	seen := map[int]bool{}
	for _, pid := range skip {
		seen[pid] = true
	}
	var pids []int
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		pids = append(pids, pid)
		queue = append(queue, children[pid]...)
	}
	return pids, nil
}

// processPSS is a process's Pss from /proc/PID/smaps_rollup, in bytes.
func processPSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10, err
		}
	}
	return 0, nil // a kernel thread has none
}
