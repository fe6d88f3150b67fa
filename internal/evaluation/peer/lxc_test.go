package peer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requirePeer(t *testing.T, name string) {
	t.Helper()
	requireRoot(t)
	if err := Installed(name); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// TestLXCLifecycle runs real LXC through bench's steps on the busybox
// tree, times them, and checks that Close leaves nothing on the host.
func TestLXCLifecycle(t *testing.T) {
	requirePeer(t, "lxc")
	env := testEnv(t)
	m, err := New("lxc")
	if err != nil {
		t.Fatal(err)
	}
	runLifecycle(t, "lxc", m, env, privateCgroup("lxc", env.Dir), "[lxc monitor] "+filepath.Join(env.Dir, "lxc"))
}

// A container LXC cannot start fails with LXC's own words: the log's
// first error, the cause, and lxc-start's last line; nothing is left.
func TestLXCStartFailureSaysWhy(t *testing.T) {
	requirePeer(t, "lxc")
	env := testEnv(t)
	before := readHostState(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := &LXC{}
	defer m.Close(ctx)
	if err := m.Setup(ctx, env); err != nil {
		t.Fatal(err)
	}
	id := "pvpeer-broken"
	if err := m.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The overlay's upper dir is gone: LXC cannot mount the root.
	upper := filepath.Join(env.Dir, "lxc", id, "upper")
	if err := os.Remove(upper); err != nil {
		t.Fatal(err)
	}
	err := m.Start(ctx, id)
	if err == nil {
		t.Fatal("Start succeeded without the container's upper dir")
	}
	t.Logf("Start: %v", err)
	msg := err.Error()
	if !strings.Contains(msg, upper) || !strings.HasSuffix(msg, "Additional information can be obtained by setting the --logfile and --logpriority options") {
		t.Errorf("Start's error %q does not name the missing dir or end with lxc-start's last line", msg)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, before, env, nil, []string{id}, privateCgroup("lxc", env.Dir))
}

// A Dir the container's unprivileged root cannot reach fails Setup with
// the dir and the fix.
func TestLXCSetupRefusesAHiddenDir(t *testing.T) {
	requirePeer(t, "lxc")
	hidden := filepath.Join(t.TempDir(), "hidden")
	if err := os.Mkdir(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	env := Env{Dir: filepath.Join(hidden, "peer"), RootFS: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(env.RootFS, "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/busybox", filepath.Join(env.RootFS, "sbin", "init")); err != nil {
		t.Fatal(err)
	}
	// Searchable down to the tree: its temp dirs' parent is the test's
	// own (0700). Above it is the host's TMPDIR, which is not the test's
	// to change.
	os.Chmod(filepath.Dir(env.RootFS), 0o711)
	m := &LXC{}
	err := m.Setup(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), hidden+" is not searchable") || !strings.Contains(err.Error(), "chmod o+x "+hidden) {
		t.Errorf("Setup under a 0700 dir: %v, want the dir named with the fix", err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
