package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// pssKiB returns a process's proportional set size in KiB: its private
// pages plus its share of the pages it shares (the monitor binary's text,
// mapped by every monitor, counts once in total rather than once per
// monitor as RSS would).
func pssKiB(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("pss of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pss of %d: %w", pid, err)
			}
			return kb, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("pss of %d: %w", pid, err)
	}
	return 0, fmt.Errorf("pss of %d: no Pss line in %s", pid, path)
}
