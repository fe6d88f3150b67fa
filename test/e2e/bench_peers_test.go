package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// peerLeftovers lists what bench's peers may leave on the host: their
// own dirs (/var/tmp/polyvisor-peer-*: bundles, overlays, private stores,
// daemons' state and sockets, disks), mounts, cgroups and processes
// (monitors, daemons, QEMU) that refer to those dirs.
func peerLeftovers(t *testing.T) []string {
	t.Helper()
	left, _ := filepath.Glob("/var/tmp/polyvisor-peer-*")
	for _, pattern := range []string{"/sys/fs/cgroup/*/polyvisor-peer-*", "/sys/fs/cgroup/polyvisor-peer-*"} {
		cgroups, _ := filepath.Glob(pattern)
		left = append(left, cgroups...)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "polyvisor-peer-") {
			left = append(left, "mount: "+line)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		argv, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join(p, "environ"))
		if strings.Contains(string(argv), "polyvisor-peer-") || strings.Contains(string(environ), "polyvisor-peer-") {
			left = append(left, "process: "+strings.ReplaceAll(string(argv), "\x00", " "))
		}
	}
	return left
}

// hybridCgroups says whether the host mounts cgroup v1 beside an empty v2
// hierarchy, which crun refuses.
func hybridCgroups() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// checkPeers asserts that bench drove every peer on the same workload:
// each one's lifecycle, idle memory and the probe in every round, or, for
// crun on a hybrid cgroup host, crun's own reason; and that nothing of
// theirs is left.
func checkPeers(t *testing.T, d *testenv.Daemon, r *benchreport.Report, table string) {
	t.Helper()
	for _, name := range peer.Names {
		c := r.FindClass(benchreport.PeerPrefix + name)
		if c == nil {
			t.Errorf("no class %s in the report", benchreport.PeerPrefix+name)
			continue
		}
		if name == "crun" && hybridCgroups() {
			if c.Works || !strings.Contains(c.Reason, "hybrid") {
				t.Errorf("peer-crun on a hybrid cgroup host: works %v, reason %q; want crun's refusal", c.Works, c.Reason)
			}
			continue
		}
		if !c.Works || c.Probe == nil || c.ProbeError != "" {
			t.Errorf("%s: works %v, probe error %q, reason %q", c.Name, c.Works, c.ProbeError, c.Reason)
			continue
		}
		if len(c.Lifecycle) != 4 {
			t.Errorf("%s: lifecycle %+v, want provision, boot, stop and delete", c.Name, c.Lifecycle)
		}
		for _, f := range c.Lifecycle {
			if f.Error != "" || !(f.Median > 0) {
				t.Errorf("%s: %s: %+v", c.Name, f.Name, f)
			}
		}
		if c.Density == nil || c.Density.PerGuestBytes <= 0 {
			t.Errorf("%s: idle memory %+v", c.Name, c.Density)
		}
		if len(c.Rounds) != r.Rounds {
			t.Errorf("%s: %d rounds, the report %d", c.Name, len(c.Rounds), r.Rounds)
		}
		for _, res := range c.Probe.Results {
			if res.Error != "" {
				t.Errorf("%s: %s: %s", c.Name, res.Name, res.Error)
			}
		}
	}
	if t.Failed() {
		t.Logf("the table:\n%s", table)
	} else {
		for _, pair := range [][2]string{{"peer-runc", benchreport.Container}, {"peer-lxc", benchreport.Container}, {"peer-podman", benchreport.Container},
			{"peer-incus", benchreport.Container}, {"peer-qemu", benchreport.VM}, {"peer-virsh", benchreport.VM}} {
			peer, class := r.FindClass(pair[0]), r.FindClass(pair[1])
			t.Logf("%s/%s: boot %.1f/%.1f ms; cpu.int of native %.2f/%.2f", pair[1], pair[0],
				boot(class), boot(peer), cpuRatio(t, r, pair[1], probe.CPUInt), cpuRatio(t, r, pair[0], probe.CPUInt))
		}
	}
	for _, want := range []string{"raw runc run", "raw QEMU", "LXC", "podman", "Incus", "libvirt"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table has no column %q", want)
		}
	}
	if guests, _ := d.Guests(); len(guests) > 0 {
		for _, g := range guests {
			// TestBenchMeasuresTheJailUMLAndBochs's bench (uml, bochs, chroot) may
			// run beside this one on the same daemon: its guests are its own.
			if strings.HasPrefix(g.Name, "pv-bench-") && !slices.ContainsFunc([]string{"uml", "bochs", "chroot"}, func(other string) bool {
				return strings.HasPrefix(g.Name, "pv-bench-"+other+"-")
			}) {
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
