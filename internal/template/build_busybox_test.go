package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

func buildBusyboxForTest(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	hostreq.Need(t, hostBusybox)
	rootfs := t.TempDir()
	var phases []string
	progress := func(phase string, done, total int64) {
		if len(phases) == 0 || phases[len(phases)-1] != phase {
			phases = append(phases, phase)
		}
	}
	if err := BuildBusybox(context.Background(), rootfs, progress); err != nil {
		t.Fatal(err)
	}
	t.Logf("phases: %q", phases)
	return rootfs
}

func TestBuildBusyboxRunsInChroot(t *testing.T) {
	rootfs := buildBusyboxForTest(t)
	if got := inChroot(t, rootfs, "echo ok"); got != "ok\n" {
		t.Fatalf("echo ok printed %q", got)
	}
	// Applets in every directory busybox uses, run through their symlinks.
	if got := inChroot(t, rootfs, "echo one two | /usr/bin/wc -w; /bin/ls -d /tmp; /usr/bin/id -u; /sbin/init --help 2>&1 | head -1"); !strings.HasPrefix(got, "2\n/tmp\n0\nBusyBox") {
		t.Fatalf("applets printed %q", got)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "sbin/init")); err != nil || target != "/bin/busybox" {
		t.Fatalf("/sbin/init -> %q, %v", target, err)
	}
	checkMode(t, rootfs, "tmp", os.ModeDir|os.ModeSticky|0o777)
	checkMode(t, rootfs, "root", os.ModeDir|0o700)
	checkMode(t, rootfs, "bin/busybox", 0o755)
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if !strings.HasPrefix(string(passwd), "root:x:0:0:root:/root:/bin/sh\n") || !strings.Contains(string(passwd), ":65534:") {
		t.Fatalf("/etc/passwd is %q", passwd)
	}
	inittab, _ := os.ReadFile(filepath.Join(rootfs, "etc/inittab"))
	if !strings.Contains(string(inittab), "::respawn:-/bin/sh\n") {
		t.Fatalf("/etc/inittab is %q", inittab)
	}
}

func checkMode(t *testing.T, rootfs, rel string, want os.FileMode) {
	t.Helper()
	info, err := os.Lstat(filepath.Join(rootfs, rel))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != want {
		t.Errorf("/%s: mode %v, want %v", rel, info.Mode(), want)
	}
}

func TestBuildBusyboxRefusesNonEmptyDir(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "something"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BuildBusybox(context.Background(), rootfs, nil); err == nil {
		t.Fatal("BuildBusybox into a non-empty directory succeeded")
	}
}

// TestBusyboxInitStopsOnSIGTERM checks what build_inittab.go says: busybox init as pid 1 of a
// pid namespace, with our inittab, ends within a few seconds of SIGTERM.
func TestBusyboxInitStopsOnSIGTERM(t *testing.T) {
	rootfs := buildBusyboxForTest(t)
	if took := bootAndStop(t, rootfs); took > 8*time.Second {
		t.Fatalf("init took %v to stop", took)
	}
}
