package benchreport

import (
	"path/filepath"
	"sort"
)

// Last returns the newest report.json under dir (STATE/bench, one
// directory per run, named by its UTC time), or "".
func Last(dir string) string {
	runs, _ := filepath.Glob(filepath.Join(dir, "*", "report.json"))
	sort.Strings(runs)
	if len(runs) == 0 {
		return ""
	}
	return runs[len(runs)-1]
}
