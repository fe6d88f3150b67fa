package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

func TestDebootstrapProgress(t *testing.T) {
	lines := []string{
		"I: Target architecture can be executed",
		"I: Retrieving InRelease ",
		"I: Checking Release signature",
		"I: Retrieving Packages ",
		"I: Resolving dependencies of required packages...",
		"I: Retrieving adduser 3.134",
		"I: Validating adduser 3.134",
		"I: Retrieving apt 2.6.1",
		"I: Retrieving bash 5.2.15-2+b13",
		"I: Extracting adduser...",
		"I: Extracting apt...",
		"I: Installing core packages...",
		"I: Unpacking required packages...",
		"I: Unpacking adduser...",
		"I: Configuring required packages...",
		"I: Configuring adduser...",
		"I: Configuring apt...",
		"I: Configuring bash...",
		"I: Configuring bash...",
		"I: Unpacking the base system...",
		"I: Unpacking bash...",
		"I: Unpacking apt...",
		"I: Configuring the base system...",
		"I: Configuring bash...",
		"W: Failure trying to run: chroot ...",
		"I: Base system installed successfully.",
	}
	type report struct {
		phase       string
		done, total int64
	}
	var got []report
	var parser debootstrapProgress
	for _, line := range lines {
		if phase, done, total, ok := parser.parse(line); ok {
			got = append(got, report{phase, done, total})
		}
	}
	want := []report{
		{"retrieving package lists", 0, 0},
		{"retrieving package lists", 0, 0},
		{"resolving dependencies", 0, 0},
		{"retrieving packages", 1, 0},
		{"retrieving packages", 2, 0},
		{"retrieving packages", 3, 0},
		{"extracting packages", 1, 3},
		{"extracting packages", 2, 3},
		{"installing packages", 0, 3},
		{"installing packages", 0, 3},
		{"installing packages", 1, 3},
		{"configuring packages", 0, 3},
		{"configuring packages", 1, 3},
		{"configuring packages", 2, 3},
		{"configuring packages", 3, 3},
		{"configuring packages", 3, 3}, // never more done than total
		{"installing packages", 0, 2},  // the second round: 2 packages not yet unpacked
		{"installing packages", 1, 2},
		{"installing packages", 2, 2},
		{"configuring packages", 0, 2},
		{"configuring packages", 1, 2},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d reports %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("report %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func FuzzDebootstrapProgress(f *testing.F) {
	f.Add("I: Retrieving adduser 3.134")
	f.Add("I: Configuring the base system...")
	f.Add("I: ")
	f.Fuzz(func(t *testing.T, line string) {
		var parser debootstrapProgress
		for range 3 {
			if _, done, total, ok := parser.parse(line); ok && total > 0 && done > total {
				t.Fatalf("done %d > total %d", done, total)
			}
		}
	})
}

func requireDebootstrap(t *testing.T) {
	t.Helper()
	testgate.RequireLong(t, "debootstraps Debian bookworm from the host's mirror (about a minute, needs the network)")
	requireRoot(t)
	requireCommand(t, "debootstrap")
	if _, err := MirrorFromHost("/"); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// The full Debian build is exercised once per run, through the product, by
// test/e2e (TestDebianTemplateOnDisk): building it here too would add
// another minute of debootstrap to every make test.

func TestBuildDebianCancelledLeavesNoMountsOrProcesses(t *testing.T) {
	requireDebootstrap(t)
	rootfs := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Cancel once packages are being installed: debootstrap has /proc and /sys mounted in
	// the target by then, and dpkg running.
	progress := func(phase string, done, total int64) {
		if phase == "installing packages" && done >= 5 && ctx.Err() == nil {
			mounts, _ := fsutil.MountPoints()
			for _, m := range mounts {
				if strings.HasPrefix(m, rootfs+"/") {
					t.Logf("mounted in the target when cancelling: %s", m)
				}
			}
			cancel()
		}
	}
	err := BuildDebian(ctx, rootfs, "bookworm", "amd64", progress)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	t.Logf("error: %v", err)
	checkNoMountsUnder(t, rootfs)
	checkNoProcessesIn(t, rootfs)
}

func checkNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	mounts, err := fsutil.MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			t.Errorf("mount left under the rootfs: %s", m)
		}
	}
}

// checkNoProcessesIn fails if a process has its root directory inside dir (a chrooted dpkg).
func checkNoProcessesIn(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		root, err := os.Readlink(filepath.Join("/proc", e.Name(), "root"))
		if err == nil && (root == dir || strings.HasPrefix(root, dir+"/")) {
			t.Errorf("process %s still runs in the rootfs", e.Name())
		}
	}
}

// treeBytes returns the disk space the files under root take, each inode counted once.
