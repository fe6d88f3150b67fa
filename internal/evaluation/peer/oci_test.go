package peer

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/procutil"
)

// ociEnv is the Env bench gives a raw runtime: a fresh dir, the busybox
// tree in the shared id map, a polyvisor container's spec.
func ociEnv(t *testing.T) Env {
	t.Helper()
	return Env{Dir: filepath.Join(searchableTempDir(t), "peer"), RootFS: busyboxRootFS(t), CPUs: 2, MemoryMiB: 128, Spec: polyvisorLikeSpec()}
}

// closeAndCheck closes m and checks that nothing it made remains: no
// mount under its dir, no file in it, no cgroup, no process of procs.
func closeAndCheck(t *testing.T, m *OCI, procs []procutil.Identity) {
	t.Helper()
	step(t, "close", func() error { return m.Close(context.Background()) })
	requireGone(t, procs)
	requireNoMountsUnder(t, m.env.Dir)
	requireEmptyDir(t, m.env.Dir)
	if left := cgroupsOf(m.cgroupParent); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
}

func testOCIManager(t *testing.T, runtime string) {
	requireRoot(t)
	hostreq.Need(t, runtime)
	m, err := New(runtime)
	if err != nil {
		t.Fatal(err)
	}
	oci := m.(*OCI)
	env := ociEnv(t)
	ctx := t.Context()
	t.Cleanup(func() { oci.Close(context.Background()) })
	step(t, "setup", func() error { return m.Setup(ctx, env) })
	step(t, "create", func() error { return m.Create(ctx, "g0") })
	step(t, "start", func() error { return m.Start(ctx, "g0") })
	checkExec(t, m, "g0")
	procs := alivePIDs(t, m, "g0")
	if cmd, _ := Cmdline(procs[0].PID); len(cmd) == 0 || filepath.Base(cmd[0]) != "init" {
		t.Errorf("the first PID runs %q, want the container's init", cmd)
	}
	// The limits are Env's, not the copied spec's.
	if cgroup.Mode() != "v2" {
		limit, err := os.ReadFile(filepath.Join(cgroup.Root, "memory", oci.cgroupParent, "g0", "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(limit)) != "134217728" {
			t.Errorf("the guest's memory limit: %q %v, want Env's 128 MiB", limit, err)
		}
	}
	step(t, "stop", func() error { return m.Stop(ctx, "g0") })
	requireGone(t, procs)
	if code, err := m.Exec(ctx, "g0", []string{"true"}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("exec in a stopped guest: %d, %v; want an error that says it is not running", code, err)
	}
	step(t, "delete", func() error { return m.Delete(ctx, "g0") })
	requireNoMountsUnder(t, filepath.Join(env.Dir, "g0"))
	if _, err := os.Stat(filepath.Join(env.Dir, "g0")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the deleted guest's dir: %v, want it gone", err)
	}
	if left := cgroupsOf(oci.cgroupParent + "/g0"); len(left) > 0 {
		t.Errorf("the deleted guest's cgroups are left: %v", left)
	}
	// Close removes a guest left running.
	step(t, "create g1", func() error { return m.Create(ctx, "g1") })
	step(t, "start g1", func() error { return m.Start(ctx, "g1") })
	closeAndCheck(t, oci, alivePIDs(t, m, "g1"))
}

func TestRuncManager(t *testing.T) { testOCIManager(t, "runc") }

// isHybrid says whether the host mounts cgroups as this project's CI
// does: v1 controllers on a tmpfs, and an empty cgroup2 at unified.
func isHybrid(t *testing.T) bool {
	var root, unified unix.Statfs_t
	if err := unix.Statfs(cgroup.Root, &root); err != nil {
		t.Fatal(err)
	}
	return root.Type == unix.TMPFS_MAGIC && unix.Statfs(filepath.Join(cgroup.Root, "unified"), &unified) == nil && unified.Type == unix.CGROUP2_SUPER_MAGIC
}

// crun 1.8 refuses hybrid cgroups: there its Start must fail with crun's
// own words and leave nothing; elsewhere it runs like runc.
func TestCrunManager(t *testing.T) {
	if !isHybrid(t) {
		testOCIManager(t, "crun")
		return
	}
	requireRoot(t)
	hostreq.Need(t, "crun")
	m := NewOCI("crun")
	ctx := t.Context()
	t.Cleanup(func() { m.Close(context.Background()) })
	step(t, "setup", func() error { return m.Setup(ctx, ociEnv(t)) })
	step(t, "create", func() error { return m.Create(ctx, "g0") })
	err := m.Start(ctx, "g0")
	t.Logf("start on a hybrid host: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cgroups in hybrid mode not supported") || !strings.HasPrefix(err.Error(), "raw crun g0: crun run g0: ") {
		t.Errorf("start of crun on a hybrid host: %v, want crun's own complaint (cgroups in hybrid mode not supported)", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error is not one line: %q", err)
	}
	step(t, "delete", func() error { return m.Delete(ctx, "g0") })
	closeAndCheck(t, m, nil)
}

// A container whose init ignores SIGTERM (sleep, as PID 1 without a
// handler) is killed once the grace time is over.
func TestOCIManagerKillsWhatIgnoresSIGTERM(t *testing.T) {
	requireRoot(t)
	hostreq.Need(t, "runc")
	m := NewOCI("runc")
	m.stopGrace = time.Second
	env := ociEnv(t)
	env.Spec.Process.Args = []string{"/bin/sleep", "1000"}
	ctx := t.Context()
	t.Cleanup(func() { m.Close(context.Background()) })
	step(t, "setup", func() error { return m.Setup(ctx, env) })
	step(t, "create", func() error { return m.Create(ctx, "g0") })
	step(t, "start", func() error { return m.Start(ctx, "g0") })
	procs := alivePIDs(t, m, "g0")
	began := time.Now()
	step(t, "stop", func() error { return m.Stop(ctx, "g0") })
	if took := time.Since(began); took < m.stopGrace {
		t.Errorf("stop took %v, less than the grace time %v: init did not ignore SIGTERM", took, m.stopGrace)
	}
	requireGone(t, procs)
	step(t, "delete", func() error { return m.Delete(ctx, "g0") })
	closeAndCheck(t, m, procs)
}

func TestOCIManagerRefusesBadInput(t *testing.T) {
	requireRoot(t)
	m := NewOCI("runc")
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "peer")
	err := m.Setup(ctx, Env{Dir: dir, RootFS: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "Env.Spec") || !strings.Contains(err.Error(), "ContainerSpecOf") {
		t.Errorf("setup without a spec: %v, want it to name Env.Spec and the fix", err)
	}
	err = m.Setup(ctx, Env{Dir: dir, RootFS: filepath.Join(dir, "none"), Spec: polyvisorLikeSpec()})
	if err == nil || !strings.Contains(err.Error(), "Env.RootFS") {
		t.Errorf("setup without a tree: %v, want it to name Env.RootFS", err)
	}
	if err := m.Setup(ctx, Env{Dir: dir, RootFS: t.TempDir(), Spec: polyvisorLikeSpec()}); err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for _, id := range []string{"../x", "", "a/b", stateRootName, strings.Repeat("a", 65)} {
		if err := m.Create(ctx, id); err == nil || !strings.Contains(err.Error(), "guest id") {
			t.Errorf("create %q: %v, want the guest id refused", id, err)
		}
	}
	if err := m.Start(ctx, "nothing"); err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Errorf("start of a guest never created: %v", err)
	}
	if err := m.Create(ctx, "g0"); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(ctx, "g0"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second create of g0: %v, want it refused", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireNoMountsUnder(t, dir)
	requireEmptyDir(t, dir)
}

func TestLastLine(t *testing.T) {
	for in, want := range map[string]string{
		"time=\"2026-12-05T11:00:00Z\" level=error msg=\"runc run failed: unable to start container process: exec: \\\"x\\\": not found\"\n": `runc run failed: unable to start container process: exec: "x": not found`,
		"cgroups in hybrid mode not supported, drop all controllers from cgroupv2\n":                                                         "cgroups in hybrid mode not supported, drop all controllers from cgroupv2",
		"first\n\nsecond  \n\n": "second",
		"":                      "",
	} {
		if got := lastLine(in); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}
