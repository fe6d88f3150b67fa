package peer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testgate.RequireRoot(t, "needs root: mounts an overlay")
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), " "+dir+" ")
}

func TestPrepareRuncAndRemove(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "from-template"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	spec := &specs.Spec{
		Process: &specs.Process{Terminal: true, Args: []string{"/sbin/init"}},
		Root:    &specs.Root{Path: "/state/guests/g/rootfs"},
		Linux:   &specs.Linux{CgroupsPath: "/polyvisor/g"},
	}
	r, err := PrepareRunc(parent, spec, lower, "c0", "/pv-peer-test")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Remove()
	got, err := ReadSpec(filepath.Join(r.Dir, "bundle", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Root.Path != r.Rootfs() || got.Linux.CgroupsPath != "/pv-peer-test/c0" || got.Process.Terminal || got.Process.Args[0] != "/sbin/init" {
		t.Errorf("bundle spec: root %q, cgroup %q, terminal %v, args %q", got.Root.Path, got.Linux.CgroupsPath, got.Process.Terminal, got.Process.Args)
	}
	if spec.Root.Path != "/state/guests/g/rootfs" || !spec.Process.Terminal {
		t.Error("PrepareRunc changed the spec it copied")
	}
	if _, err := os.Stat(filepath.Join(r.Rootfs(), "from-template")); err != nil {
		t.Errorf("the template is not under the overlay: %v", err)
	}
	if err := r.CopyIn("/proc/self/exe", "probe"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(r.Upper(), "probe"))
	if err != nil {
		t.Fatalf("the copy is not in the upper dir: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if base := idmap.Default().HostBase; st.Uid != base || st.Gid != base || fi.Mode().Perm() != 0o755 {
		t.Errorf("the copy is %d:%d %v, want %d:%d 0755", st.Uid, st.Gid, fi.Mode().Perm(), base, base)
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if mounted(t, r.Rootfs()) {
		t.Error("the overlay is still mounted")
	}
	if _, err := os.Stat(r.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the container's dir is left: %v", err)
	}
}

func TestSweepRunc(t *testing.T) {
	requireRoot(t)
	lower, parent := t.TempDir(), t.TempDir()
	spec := &specs.Spec{Process: &specs.Process{}, Root: &specs.Root{}, Linux: &specs.Linux{}}
	for _, id := range []string{"a", "b"} {
		if _, err := PrepareRunc(parent, spec, lower, id, "/pv-peer-test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := SweepRunc(parent, "/pv-peer-test"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if mounted(t, filepath.Join(parent, id, "rootfs")) {
			t.Errorf("%s is still mounted", id)
		}
	}
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if e.Name() != "runc-root" { // runc's own state dir, empty
			t.Errorf("left in the parent: %s", e.Name())
		}
	}
}
