package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// vmBootMemo keeps a VM benchmark's samples across the testing package's
// calls of the benchmark function.
type vmBootMemo struct {
	polyvisor, raw samples
	// beforeQEMU is how long polyvisor took from the request to QEMU's
	// start: its share of a launch that QEMU's boot does not hide.
	beforeQEMU samples
	accel      string
	argv       []string // QEMU's command line, as polyvisor ran it
	base       string   // the template's base disk its overlay stands on
}

// buildVMTemplates builds the busybox VM templates a fixture needs, once.
func (f *fixture) buildVMTemplates(b *testing.B, arches ...string) {
	b.Helper()
	for _, a := range arches {
		began := time.Now()
		if out, errOut, code := f.daemon.Run("template", "build", "busybox", "--type", "vm", "--arch", a); code != 0 {
			b.Fatalf("template build busybox --type vm --arch %s: %s%s", a, out, errOut)
		}
		fmt.Printf("bench: %s: VM template for %s took %s\n", f.name, a, time.Since(began).Round(time.Millisecond))
	}
}

// launchVM boots a busybox VM through the API: the operation ends when the
// guest's agent answers, that is, when userspace runs.
func (f *fixture) launchVM(ctx context.Context, name, arch string) (time.Duration, error) {
	began := time.Now()
	err := f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Type: "vm", Arch: arch, Start: true, Networks: []string{"none"}})
	return time.Since(began), err
}

// BenchmarkVMBoot compares boot-to-userspace of a busybox microVM through
// polyvisor with the very same QEMU command line run by hand, alternating.
// Both end when the guest agent answers on its virtio-serial port.
func BenchmarkVMBoot(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "vmboot")
	m, _ := f.memo.(*vmBootMemo)
	if m == nil {
		f.buildVMTemplates(b, "amd64")
		m = &vmBootMemo{}
		f.memo = m
	}
	for i := range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		name := fmt.Sprintf("boot-%d", len(m.polyvisor))
		began := bootClock()
		took, err := f.launchVM(ctx, name, "amd64")
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		m.polyvisor = append(m.polyvisor, took)
		g, err := f.client.Guest(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		started, err := procutil.Identify(g.PID)
		if err != nil {
			b.Fatal(err)
		}
		// /proc's start times count clock ticks (USER_HZ, 100 a second)
		// since boot: this figure is to the nearest 10 ms.
		m.beforeQEMU = append(m.beforeQEMU, time.Duration(started.Start)*10*time.Millisecond-began)
		if m.argv == nil {
			m.accel = g.Accel
			if m.argv, err = peer.Cmdline(g.PID); err != nil {
				b.Fatal(err)
			}
			if m.base, err = peer.BackingOf(peer.RootDisk(m.argv)); err != nil {
				b.Fatal(err)
			}
		}
		if err := testenv.DeleteGuest(ctx, f.client, name); err != nil {
			b.Fatal(err)
		}
		rawTook, err := bootRaw(ctx, f, m.argv, m.base, i)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		m.raw = append(m.raw, rawTook)
	}
	b.ReportMetric(m.polyvisor.median(), "polyvisor-ms/op")
	b.ReportMetric(m.raw.median(), "qemu-ms/op")
	b.ReportMetric(m.polyvisor.median()/m.raw.median(), "ratio")
	b.ReportMetric(m.beforeQEMU.median(), "before-qemu-ms/op")
	b.Logf("n=%d accel %s; polyvisor ms: min %.0f p50 %.0f max %.0f (until QEMU started: p50 %.0f, max %.0f); qemu by hand ms: min %.0f p50 %.0f max %.0f; ratio %.2f (target <= 1.03)",
		len(m.raw), m.accel, m.polyvisor.percentile(0), m.polyvisor.median(), m.polyvisor.percentile(100),
		m.beforeQEMU.median(), m.beforeQEMU.percentile(100),
		m.raw.percentile(0), m.raw.median(), m.raw.percentile(100), m.polyvisor.median()/m.raw.median())
}

// BenchmarkVMBootConfinement compares boot-to-userspace of a busybox
// microVM whose QEMU is confined (an unprivileged user, QEMU's seccomp
// sandbox, a cgroup of its own) with the same VM under a daemon started
// with the benchmarks-only --unconfined-vms, alternating between the two
// daemons on one state dir.
func BenchmarkVMBootConfinement(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "vmconfine")
	type memo struct {
		confined, unconfined samples
		throttled            samples // of the confined boots, by the cpu limit
	}
	m, _ := f.memo.(*memo)
	if m == nil {
		f.buildVMTemplates(b, "amd64")
		m = &memo{}
		f.memo = m
	}
	boot := func(unconfined bool) (time.Duration, error) {
		flags := []string{"--default-network", "none"}
		if unconfined {
			flags = append(flags, "--unconfined-vms")
		}
		if err := f.daemon.RestartWith(flags...); err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		name := fmt.Sprintf("confine-%d-%v", len(m.confined), unconfined)
		took, err := f.launchVM(ctx, name, "amd64")
		if err != nil {
			return 0, err
		}
		// Each side measures what it says: QEMU's seccomp mode is 2 under
		// its sandbox, 0 without.
		g, err := f.client.Guest(ctx, name)
		if err == nil {
			err = checkSeccomp(g.PID, !unconfined)
		}
		if err == nil && !unconfined {
			var throttled time.Duration
			// QEMU's cgroup is the host's object: read where the process is.
			var cg string
			if cg, err = cgroupOf(g.PID, "cpu"); err == nil {
				throttled, err = cpuThrottled(cg)
			}
			m.throttled = append(m.throttled, throttled)
		}
		if derr := testenv.DeleteGuest(ctx, f.client, name); err == nil {
			err = derr
		}
		return took, err
	}
	for i := range b.N {
		// Alternating which goes first cancels what the order costs.
		for _, unconfined := range []bool{i%2 == 1, i%2 == 0} {
			took, err := boot(unconfined)
			if err != nil {
				b.Fatal(err)
			}
			if unconfined {
				m.unconfined = append(m.unconfined, took)
			} else {
				m.confined = append(m.confined, took)
			}
		}
	}
	b.ReportMetric(m.confined.median(), "confined-ms/op")
	b.ReportMetric(m.unconfined.median(), "unconfined-ms/op")
	b.ReportMetric(m.confined.median()/m.unconfined.median(), "ratio")
	b.ReportMetric(m.throttled.median(), "throttled-ms/op")
	b.Logf("n=%d; confined ms: min %.0f p50 %.0f max %.0f; unconfined ms: min %.0f p50 %.0f max %.0f; ratio %.2f; confined QEMU throttled by its cpu limit: p50 %.0f ms, max %.0f ms",
		len(m.unconfined), m.confined.percentile(0), m.confined.median(), m.confined.percentile(100),
		m.unconfined.percentile(0), m.unconfined.median(), m.unconfined.percentile(100), m.confined.median()/m.unconfined.median(),
		m.throttled.median(), m.throttled.percentile(100))
}

// cpuThrottled reads how long the cpu limit held the cgroup's processes
// back (cgroup v1's cpu.stat throttled_time; v2's throttled_usec).
func cpuThrottled(cgroup string) (time.Duration, error) {
	for _, f := range []struct {
		path, key string
		unit      time.Duration
	}{
		{"/sys/fs/cgroup/cpu" + cgroup + "/cpu.stat", "throttled_time", time.Nanosecond},
		{"/sys/fs/cgroup" + cgroup + "/cpu.stat", "throttled_usec", time.Microsecond},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, f.key+" "); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				return time.Duration(n) * f.unit, err
			}
		}
	}
	return 0, fmt.Errorf("no cpu.stat for cgroup %s", cgroup)
}

// checkSeccomp fails unless QEMU pid is (or is not) under a seccomp filter.
func checkSeccomp(pid int, filtered bool) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	want := "Seccomp:\t0"
	if filtered {
		want = "Seccomp:\t2"
	}
	if !strings.Contains(string(data), want+"\n") {
		return fmt.Errorf("QEMU %d: want %q in its status:\n%s", pid, want, data)
	}
	return nil
}

// BenchmarkVMBootAarch64 measures boot-to-userspace of a busybox aarch64
// guest, emulated under TCG, through polyvisor.
func BenchmarkVMBootAarch64(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "vmbootarm")
	m, _ := f.memo.(*vmBootMemo)
	if m == nil {
		f.buildVMTemplates(b, "arm64")
		m = &vmBootMemo{}
		f.memo = m
	}
	for range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		name := fmt.Sprintf("arm-%d", len(m.polyvisor))
		took, err := f.launchVM(ctx, name, "arm64")
		if err == nil {
			err = testenv.DeleteGuest(ctx, f.client, name)
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		m.polyvisor = append(m.polyvisor, took)
	}
	b.ReportMetric(m.polyvisor.median(), "polyvisor-ms/op")
	b.Logf("n=%d aarch64 under TCG: min %.0f p50 %.0f max %.0f ms", len(m.polyvisor),
		m.polyvisor.percentile(0), m.polyvisor.median(), m.polyvisor.percentile(100))
}

// BenchmarkVMIdleMemory measures the host memory of idle busybox VMs with
// 256 MiB of guest RAM: QEMU's PSS and its monitor's.
func BenchmarkVMIdleMemory(b *testing.B) {
	const vms = 3
	requireRoot(b)
	f := openFixture(b, "vmidle")
	type result struct{ qemu, monitor int64 }
	r, _ := f.memo.(*result)
	if r == nil {
		f.buildVMTemplates(b, "amd64")
		r = &result{}
		ctx, cancel := context.WithTimeout(b.Context(), 3*opTimeout)
		defer cancel()
		for i := range vms {
			if _, err := f.launchVM(ctx, fmt.Sprintf("idle-%d", i), "amd64"); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(5 * time.Second)
		guests, err := f.client.Guests(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, g := range guests {
			q, err1 := pssKiB(g.PID)
			mon, err2 := pssKiB(g.MonitorPID)
			if err1 != nil || err2 != nil {
				b.Fatal(err1, err2)
			}
			r.qemu += q
			r.monitor += mon
		}
		f.memo = r
		b.Logf("%d idle busybox VMs, 256 MiB each: QEMU %d KiB PSS in all, monitors %d KiB", vms, r.qemu, r.monitor)
	}
	for range b.N {
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(r.qemu)/vms, "qemu-kib-per-vm")
	b.ReportMetric(float64(r.monitor)/vms, "monitor-kib-per-vm")
}

// bootRaw runs polyvisor's QEMU command line by hand, with a fresh disk
// overlay and sockets of its own and the console in a file, and times it
// until the guest agent answers.
func bootRaw(ctx context.Context, f *fixture, argv []string, base string, i int) (time.Duration, error) {
	dir := filepath.Join(f.rawDir(), fmt.Sprintf("vm-%d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	disk, err := peer.Overlay(base, dir, 0)
	if err != nil {
		return 0, err
	}
	began := time.Now()
	q, err := peer.StartQEMU(argv, disk, dir)
	if err != nil {
		return 0, err
	}
	defer q.Stop()
	c, err := q.Agent(ctx)
	if err != nil {
		return 0, err
	}
	took := time.Since(began)
	c.Close()
	return took, nil
}

// bootClock is the time since the host booted, the clock of /proc's
// process start times.
func bootClock() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}
