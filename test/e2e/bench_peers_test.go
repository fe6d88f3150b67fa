package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/benchreport"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/probe"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// peerLeftovers lists what bench's peers may leave on the host: their
// work dirs (runc root, bundles, overlays, QEMU sockets and disks),
// overlay mounts, cgroups and QEMU processes.
func peerLeftovers(t *testing.T) []string {
	t.Helper()
	left, _ := filepath.Glob("/var/tmp/polyvisor-peer-*")
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/pv-bench-peer")
	if _, err := os.Stat("/sys/fs/cgroup/pv-bench-peer"); err == nil {
		cgroups = append(cgroups, "/sys/fs/cgroup/pv-bench-peer")
	}
	left = append(left, cgroups...)
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "polyvisor-peer-") {
			left = append(left, "mount: "+line)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if argv, err := os.ReadFile(p); err == nil && strings.Contains(string(argv), "polyvisor-peer-qemu-") {
			left = append(left, "process: "+strings.ReplaceAll(string(argv), "\x00", " "))
		}
	}
	return left
}

// checkPeers asserts that bench ran raw runc and raw QEMU on the same
// workload, said the truth about podman (not installed, with its package,
// or installed but not driven yet: it holds either way), and left nothing
// behind.
func checkPeers(t *testing.T, d *testenv.Daemon, r *benchreport.Report, table string) {
	t.Helper()
	for _, name := range []string{"peer-runc", "peer-qemu"} {
		c := r.FindClass(name)
		if c == nil {
			t.Fatalf("no class %s in the report:\n%s", name, table)
		}
		if !c.Works || c.Probe == nil || c.ProbeError != "" {
			t.Errorf("%s: works %v, probe error %q, reason %q", name, c.Works, c.ProbeError, c.Reason)
		}
		if len(c.Lifecycle) != 1 || c.Lifecycle[0].Name != benchreport.Boot || c.Lifecycle[0].Error != "" || !(c.Lifecycle[0].Median > 0) {
			t.Errorf("%s: lifecycle %+v, want one boot figure", name, c.Lifecycle)
		}
		if c.Probe != nil {
			for _, res := range c.Probe.Results {
				if res.Error != "" {
					t.Errorf("%s: %s: %s", name, res.Name, res.Error)
				}
			}
		}
	}
	wantPodman := "installed, but bench does not drive it yet"
	if _, err := hostreq.Lookup("podman"); err != nil {
		wantPodman = err.Error()
	}
	if c := r.FindClass("peer-podman"); c == nil || c.Works || c.Reason != wantPodman {
		t.Errorf("peer-podman: %+v, want %q", c, wantPodman)
	}
	if t.Failed() {
		t.Logf("the table:\n%s", table)
	} else {
		for _, pair := range [][2]string{{"peer-runc", benchreport.Container}, {"peer-qemu", benchreport.VM}} {
			peer, class := r.FindClass(pair[0]), r.FindClass(pair[1])
			t.Logf("%s/%s: boot %.1f/%.1f ms; cpu.int of native %.2f/%.2f", pair[1], pair[0],
				boot(class), boot(peer), cpuRatio(t, r, pair[1], probe.CPUInt), cpuRatio(t, r, pair[0], probe.CPUInt))
		}
	}
	for _, want := range []string{"raw runc run", "raw QEMU", "podman (peer)"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table has no column %q", want)
		}
	}
	if guests, _ := d.Guests(); len(guests) > 0 {
		for _, g := range guests {
			if strings.HasPrefix(g.Name, "pv-bench-") {
				t.Errorf("bench left guest %s", g.Name)
			}
		}
	}
	if left := peerLeftovers(t); len(left) > 0 {
		t.Errorf("peers left behind: %q", left)
	}
}

// readReport reads the report.json that bench wrote to dir.
func readReport(t *testing.T, dir string) *benchreport.Report {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := benchreport.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// boot is a class's median boot, 0 when it has none.
func boot(c *benchreport.Class) float64 {
	for _, f := range c.Lifecycle {
		if f.Name == benchreport.Boot {
			return f.Median
		}
	}
	return 0
}
