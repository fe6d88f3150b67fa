package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// loopback is where both "hosts" of these tests listen.
var loopback = netip.MustParseAddr("127.0.0.1")

// migrationHosts are two drivers on this one machine, each with a state
// dir, run dir and cgroup parent of its own, as two hosts of a cluster
// have, and the same busybox VM template.
type migrationHosts struct {
	a, b *Driver
}

// newMigrationHosts makes the two hosts; bandwidth, when not 0, caps
// their migrations' memory streams (bytes/s).
func newMigrationHosts(tb testing.TB, bandwidth int64) migrationHosts {
	tb.Helper()
	tmp := tb.TempDir()
	bin, err := testenv.BuildBinaries(testenv.RepoRoot(), tmp)
	if err != nil {
		tb.Fatal(err)
	}
	var ls []layout.Layout
	for _, name := range []string{"a", "b"} {
		l := layout.New(filepath.Join(tmp, name))
		for _, dir := range []string{l.StateDir, l.GuestsDir(), l.TemplatesDir()} {
			if err := os.MkdirAll(dir, 0o711); err != nil {
				tb.Fatal(err)
			}
		}
		ls = append(ls, l)
	}
	store := template.Store{Dir: ls[0].TemplatesDir(), AgentDir: bin}
	if _, err := store.Build(context.Background(), template.Request{Source: "busybox", Type: template.TypeVM}, func(string, int64, int64) {}); err != nil {
		tb.Fatal(err)
	}
	// Each host of a cluster has the template (its kernel boots the guest).
	if out, err := exec.Command("cp", "-a", ls[0].TemplatesDir()+"/.", ls[1].TemplatesDir()).CombinedOutput(); err != nil {
		tb.Fatalf("copy the template: %v: %s", err, out)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ds []*Driver
	for _, l := range ls {
		d := New(Options{Layout: l, Monitor: filepath.Join(bin, "polyvisor-monitor"), Log: log, MigrationBandwidth: bandwidth})
		ds = append(ds, d)
		tb.Cleanup(func() {
			d.Wait()
			os.RemoveAll(l.RunDir())
			if err := cgroup.Remove(l.CgroupParent()); err != nil {
				tb.Error(err)
			}
		})
	}
	return migrationHosts{a: ds[0], b: ds[1]}
}

// launch creates and starts a 256 MiB busybox VM on d, as the daemon does.
func launch(tb testing.TB, d *Driver, name string) *guest.Definition {
	tb.Helper()
	ctx := context.Background()
	def := &guest.Definition{
		SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeVM, Class: Class,
		Template: "busybox", Arch: arch.Host().Debian, CPUs: 1, Memory: 256 << 20, Processes: 1024,
		Rootfs: guest.RootfsQcow2, CreatedAt: time.Now(), Status: guest.Status{State: api.StateStopped},
	}
	dir := d.guestDir(def)
	staging := dir + ".staging"
	if err := os.MkdirAll(staging, 0o711); err != nil {
		tb.Fatal(err)
	}
	if err := d.Create(ctx, staging, def); err != nil {
		tb.Fatalf("Create: %v", err)
	}
	if err := os.Rename(staging, dir); err != nil {
		tb.Fatal(err)
	}
	status, err := d.Start(ctx, def)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("Start: %v", err)
	}
	def.Status = status
	tb.Cleanup(func() { remove(tb, d, def) })
	return def
}

// remove ends and deletes a guest of d, as the daemon does.
func remove(tb testing.TB, d *Driver, def *guest.Definition) {
	ctx := context.Background()
	d.Stop(ctx, def, 0)
	d.Cleanup(ctx, def)
	if err := d.Delete(ctx, def); err != nil {
		tb.Errorf("Delete: %v", err)
	}
	os.RemoveAll(d.guestDir(def))
}

// inGuest runs script in the guest and returns its output.
func inGuest(tb testing.TB, d *Driver, def *guest.Definition, script string) string {
	tb.Helper()
	var out, errOut strings.Builder
	code, err := d.Exec(context.Background(), def, api.ExecRequest{Command: []string{"sh", "-c", script}}, driver.Stdio{Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 {
		tb.Fatalf("exec %q in %s: code %d, err %v, stderr %q", script, def.Name, code, err, errOut.String())
	}
	return out.String()
}

// counterScript counts in /tmp/c five times a second, in the background
// (written beside and renamed, so that a read never finds it empty).
const counterScript = `setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.2; done' </dev/null >/dev/null 2>&1 &`

// counter reads the guest's counter.
func counter(tb testing.TB, d *Driver, def *guest.Definition) int {
	tb.Helper()
	out := inGuest(tb, d, def, "cat /tmp/c")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		tb.Fatalf("counter of %s: %q", def.Name, out)
	}
	return n
}

// throughJSON sends v through JSON, as daemons send it to each other.
func throughJSON[T any](tb testing.TB, v T) T {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	var back T
	if err := json.Unmarshal(data, &back); err != nil {
		tb.Fatal(err)
	}
	return back
}

// migrateGuest moves def's running guest from src to dst, as the daemons
// of both hosts do, and returns its definition on dst, the migration's
// figures and how long the target's resume took.
func migrateGuest(tb testing.TB, src, dst *Driver, def *guest.Definition) (*guest.Definition, driver.MigrationStats, time.Duration) {
	tb.Helper()
	ctx := context.Background()
	disks, err := src.MigrationDisks(ctx, def)
	if err != nil {
		tb.Fatalf("MigrationDisks: %v", err)
	}
	moved := def.Clone()
	moved.Status = guest.Status{}
	in, status, err := dst.PrepareIncoming(ctx, moved, throughJSON(tb, driver.MigrationSource{Disks: disks}), loopback)
	if err != nil {
		tb.Fatalf("PrepareIncoming: %v", err)
	}
	moved.Status = status
	stats, err := src.MigrateOut(ctx, def, throughJSON(tb, in))
	if err != nil {
		target := lastConsoleLines(filepath.Join(dst.runDir(moved), "stderr.log"))
		dst.AbortIncoming(ctx, moved)
		tb.Fatalf("MigrateOut: %v (the target QEMU says: %s; the source's: %s)", err, target, lastConsoleLines(filepath.Join(src.runDir(def), "stderr.log")))
	}
	stats = throughJSON(tb, stats)
	began := time.Now()
	if err := dst.FinishIncoming(ctx, moved); err != nil {
		dst.AbortIncoming(ctx, moved)
		tb.Fatalf("FinishIncoming: %v", err)
	}
	resume := time.Since(began)
	// The source's daemon then releases and deletes its copy.
	exit, err := src.Cleanup(ctx, def)
	if err != nil {
		tb.Fatalf("Cleanup of the source: %v", err)
	}
	if exit == nil || exit.Code != 0 || exit.Signal != 0 {
		tb.Errorf("the source's QEMU ended with %+v, want a clean exit", exit)
	}
	if err := src.Delete(ctx, def); err != nil {
		tb.Fatal(err)
	}
	os.RemoveAll(src.guestDir(def))
	return moved, stats, resume
}

// TestLiveMigration moves a running VM, with its disk, to a second host
// over TCP and checks that it ran on without restarting: a counter its
// shell keeps goes on growing from where it was, a file written before
// is there, the source's QEMU is gone, and the guest is an ordinary one
// on the target (Recover, Exec, Stop).
func TestLiveMigration(t *testing.T) {
	testgate.RequireRoot(t, "VM templates and guests need root")
	hosts := newMigrationHosts(t, 0)
	ctx := context.Background()
	def := launch(t, hosts.a, "mover")
	inGuest(t, hosts.a, def, "echo written-before > /pv-migrated && sync && "+counterScript)
	time.Sleep(time.Second)
	before := counter(t, hosts.a, def)
	if before < 2 {
		t.Fatalf("the counter is at %d after a second", before)
	}
	srcQEMU := monitored.Process(def)

	moved, stats, resume := migrateGuest(t, hosts.a, hosts.b, def)
	t.Cleanup(func() { remove(t, hosts.b, moved) })
	t.Logf("256 MiB TCG guest migrated with its disk: total %s, downtime %s until the source ended, +%s to resume on the target, %d bytes",
		stats.Total.Round(time.Millisecond), stats.Downtime.Round(time.Millisecond), resume.Round(time.Millisecond), stats.Bytes)

	if srcQEMU.Alive() {
		t.Errorf("the source's QEMU %d still runs", srcQEMU.PID)
	}
	if stats.Total <= 0 || stats.Downtime <= 0 || stats.Downtime > stats.Total || stats.Bytes < 1<<20 {
		t.Errorf("stats %+v", stats)
	}
	first := counter(t, hosts.b, moved)
	time.Sleep(time.Second)
	second := counter(t, hosts.b, moved)
	if first < before || second <= first {
		t.Errorf("counter %d before the migration, then %d and %d a second apart on the target: want it to go on growing", before, first, second)
	}
	if got := inGuest(t, hosts.b, moved, "cat /pv-migrated"); got != "written-before\n" {
		t.Errorf("the target's /pv-migrated holds %q", got)
	}
	if err := hosts.b.Recover(ctx, moved); err != nil {
		t.Errorf("Recover on the target: %v", err)
	}
	// The target's disk is whole: QEMU's own check finds nothing to fix
	// once the guest has stopped.
	if err := hosts.b.Stop(ctx, moved, 20*time.Second); err != nil {
		t.Fatalf("Stop on the target: %v", err)
	}
	if _, err := hosts.b.Cleanup(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "check", "-q", hosts.b.rootPath(moved)).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check of the target's disk: %v: %s", err, out)
	}
}

// TestLiveMigrationFails checks that a migration that fails leaves the
// guest running where it was: one to a disk server that refuses, and one
// whose disks were mirrored but whose memory could not go, after which
// the target's AbortIncoming leaves nothing behind.
func TestLiveMigrationFails(t *testing.T) {
	testgate.RequireRoot(t, "VM templates and guests need root")
	hosts := newMigrationHosts(t, 0)
	ctx := context.Background()
	def := launch(t, hosts.a, "stayer")
	inGuest(t, hosts.a, def, counterScript)

	closed, err := freePort(loopback)
	if err != nil {
		t.Fatal(err)
	}
	refused := driver.Incoming{Migration: "tcp:" + closed.String(), NBD: closed.String(), Exports: map[string]string{"root": "root"}}
	if _, err := hosts.a.MigrateOut(ctx, def, refused); err == nil {
		t.Fatal("MigrateOut to a disk server that refuses succeeded")
	} else {
		t.Logf("refused: %v", err)
	}
	stillRuns(t, hosts.a, def)

	// The disks reach the target, the memory cannot (nobody listens).
	disks, err := hosts.a.MigrationDisks(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	moved := def.Clone()
	moved.Status = guest.Status{}
	in, status, err := hosts.b.PrepareIncoming(ctx, moved, driver.MigrationSource{Disks: disks}, loopback)
	if err != nil {
		t.Fatalf("PrepareIncoming: %v", err)
	}
	moved.Status = status
	in.Migration = "tcp:" + closed.String()
	if _, err := hosts.a.MigrateOut(ctx, def, in); err == nil {
		t.Fatal("MigrateOut to a migration port that refuses succeeded")
	} else {
		t.Logf("refused: %v", err)
	}
	stillRuns(t, hosts.a, def)

	if err := hosts.b.AbortIncoming(ctx, moved); err != nil {
		t.Fatalf("AbortIncoming: %v", err)
	}
	if monitored.Process(moved).Alive() || monitored.Monitor(moved).Alive() {
		t.Error("the target's QEMU or its monitor outlived AbortIncoming")
	}
	for _, path := range []string{hosts.b.guestDir(moved), hosts.b.runDir(moved)} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after AbortIncoming (%v)", path, err)
		}
	}
}

// TestLiveMigrationCancelled ends MigrateOut's ctx while the memory is
// on its way (at 16 MiB/s, so that it is): the guest runs on where it
// was, the target's AbortIncoming removes what was made there, and a
// second migration then succeeds.
func TestLiveMigrationCancelled(t *testing.T) {
	testgate.RequireRoot(t, "VM templates and guests need root")
	hosts := newMigrationHosts(t, 16<<20)
	def := launch(t, hosts.a, "hesitant")
	inGuest(t, hosts.a, def, counterScript)
	disks, err := hosts.a.MigrationDisks(context.Background(), def)
	if err != nil {
		t.Fatal(err)
	}
	moved := def.Clone()
	moved.Status = guest.Status{}
	in, status, err := hosts.b.PrepareIncoming(context.Background(), moved, driver.MigrationSource{Disks: disks}, loopback)
	if err != nil {
		t.Fatalf("PrepareIncoming: %v", err)
	}
	moved.Status = status

	// The target says when the memory starts to arrive; then the
	// source's caller gives up.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watched := make(chan error, 1)
	go func() {
		defer cancel()
		watched <- watchIncoming(ctx, hosts.b.qmpSocket(moved))
	}()
	_, err = hosts.a.MigrateOut(ctx, def, in)
	cancel()
	if werr := <-watched; werr != nil {
		t.Fatalf("MigrateOut ended (%v) before the memory reached the target: %v", err, werr)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("MigrateOut whose ctx ended mid-way: %v, want context.Canceled", err)
	}
	t.Logf("cancelled: %v", err)
	stillRuns(t, hosts.a, def)
	if err := hosts.b.AbortIncoming(context.Background(), moved); err != nil {
		t.Fatalf("AbortIncoming: %v", err)
	}
	if monitored.Process(moved).Alive() {
		t.Error("the target's QEMU outlived AbortIncoming")
	}

	before := counter(t, hosts.a, def)
	again, _, _ := migrateGuest(t, hosts.a, hosts.b, def)
	t.Cleanup(func() { remove(t, hosts.b, again) })
	if after := counter(t, hosts.b, again); after <= before {
		t.Errorf("counter %d before the second migration, %d after", before, after)
	}
}

// watchIncoming returns once the QEMU whose QMP socket is path receives
// a migration, or fails when ctx ends first.
func watchIncoming(ctx context.Context, path string) error {
	m, err := qmp.Dial(ctx, path)
	if err != nil {
		return err
	}
	defer m.Close()
	for {
		var info qmp.MigrationInfo
		if err := m.Run(ctx, qmp.QueryMigrate{}, &info); err != nil {
			return err
		}
		if info.Status == "active" {
			return nil
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}

// stillRuns checks that a guest whose migration failed runs on, its
// counter growing, with no block job left.
func stillRuns(t *testing.T, d *Driver, def *guest.Definition) {
	t.Helper()
	first := counter(t, d, def)
	time.Sleep(700 * time.Millisecond)
	if second := counter(t, d, def); second <= first {
		t.Errorf("the guest stopped counting after the failed migration: %d then %d", first, second)
	}
	m, err := qmp.Dial(context.Background(), d.qmpSocket(def))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var jobs []qmp.BlockJobInfo
	if err := m.Run(context.Background(), qmp.QueryBlockJobs{}, &jobs); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 {
		t.Errorf("block jobs left after the failed migration: %+v", jobs)
	}
}

// BenchmarkLiveMigration256M moves a running 256 MiB TCG guest, with its
// disk, between two hosts on this machine, back and forth: total-ms is
// MigrateOut's time, downtime-ms the guest's pause (QEMU's final copy,
// the mirrors' end and the target's resume).
func BenchmarkLiveMigration256M(b *testing.B) {
	testgate.RequireRoot(b, "VM templates and guests need root")
	hosts := newMigrationHosts(b, 0)
	def := launch(b, hosts.a, "bench-mover")
	inGuest(b, hosts.a, def, counterScript)
	from, to := hosts.a, hosts.b
	var total, down time.Duration
	b.ResetTimer()
	for range b.N {
		moved, stats, resume := migrateGuest(b, from, to, def)
		total += stats.Total
		down += stats.Downtime + resume
		def, from, to = moved, to, from
	}
	b.StopTimer()
	b.Cleanup(func() { remove(b, from, def) })
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "total-ms")
	b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "downtime-ms")
}
