package peer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPodmanLifecycle runs real podman through bench's steps on the
// busybox tree, times them, and checks that Close leaves nothing on the
// host.
func TestPodmanLifecycle(t *testing.T) {
	requirePeer(t, "podman")
	env := testEnv(t)
	m, err := New("podman")
	if err != nil {
		t.Fatal(err)
	}
	runLifecycle(t, "podman", m, env, privateCgroup("podman", env.Dir), "conmon")
}

// A tree podman cannot import fails Setup with podman's own last line;
// Close after it leaves nothing.
func TestPodmanSetupFailureSaysWhy(t *testing.T) {
	requirePeer(t, "podman")
	env := testEnv(t)
	env.RootTar = filepath.Join(t.TempDir(), "not-a-tar")
	if err := os.WriteFile(env.RootTar, []byte("not a tar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := readHostState(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := &Podman{}
	err := m.Setup(ctx, env)
	if err == nil {
		m.Close(ctx)
		t.Fatal("Setup imported a file that is not a tar")
	}
	t.Logf("Setup: %v", err)
	if !strings.Contains(err.Error(), "podman import: exit status 125: Error: ") || !strings.Contains(err.Error(), "processing tar file") {
		t.Errorf("Setup's error %q does not end with podman's own last line, on the tar", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, before, env, nil, nil, privateCgroup("podman", env.Dir))
}
