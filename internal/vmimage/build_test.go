package vmimage_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/debpkg"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	list, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Name())
	}
	return names
}

// hostBusyboxTree returns a busybox root tree made from the host's busybox-static.
func hostBusyboxTree(t *testing.T) string {
	t.Helper()
	rootfs := t.TempDir()
	if err := template.BuildBusybox(context.Background(), rootfs, nil); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// callerDir returns an output directory that already holds a file of its owner's, as a
// template store's staging directory does.
func callerDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "caller-file"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuildRefusesBadArgumentsBeforeFetching(t *testing.T) {
	ctx := context.Background()
	out := callerDir(t)
	if _, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: t.TempDir(), Arch: "vax", OutDir: out, CacheDir: t.TempDir()}, nil); err == nil {
		t.Error("architecture vax accepted")
	}
	if _, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: filepath.Join(out, "missing"), Arch: "amd64", OutDir: out, CacheDir: t.TempDir()}, nil); err == nil {
		t.Error("a missing root tree accepted")
	}
	if err := os.WriteFile(filepath.Join(out, "disk.qcow2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: t.TempDir(), Arch: "amd64", OutDir: out, CacheDir: t.TempDir()}, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Build over an existing disk.qcow2: %v, want fs.ErrExist", err)
	}
}

func TestBuildChecksTheTreeBeforeFetching(t *testing.T) {
	out := callerDir(t)
	start := time.Now()
	_, err := vmimage.Build(context.Background(), vmimage.Spec{Rootfs: t.TempDir(), Arch: "amd64", OutDir: out, CacheDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "/bin/busybox") {
		t.Fatalf("Build of a tree without busybox: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v to refuse a tree without busybox", took)
	}
	if got := entries(t, out); !slices.Equal(got, []string{"caller-file"}) {
		t.Fatalf("left in the output directory: %q", got)
	}
}

func TestBuildRefusesAnAgentThatCannotRunInTheGuest(t *testing.T) {
	testgate.RequireRoot(t, "building a busybox tree needs root")
	// The host's busybox-static is a static amd64 binary; /bin/ls is dynamically linked.
	for arch, agent := range map[string]string{"arm64": "/bin/busybox", "amd64": "/bin/ls"} {
		_, err := vmimage.Build(context.Background(), vmimage.Spec{Rootfs: hostBusyboxTree(t), Arch: arch, OutDir: callerDir(t), CacheDir: t.TempDir(), Agent: agent}, nil)
		if err == nil || !strings.Contains(err.Error(), "guest agent") {
			t.Errorf("Build for %s with agent %s: %v", arch, agent, err)
		} else {
			t.Logf("%s, %s: %v", arch, agent, err)
		}
	}
}

// TestBuildLeavesOnlyTheCallersFilesOnFailure fails Build late, once the kernel and initrd are
// written: ctx ends as the root disk is about to be made.
func TestBuildLeavesOnlyTheCallersFilesOnFailure(t *testing.T) {
	requireVMTools(t, "qemu-system-x86_64")
	rootfs := hostBusyboxTree(t)
	out := callerDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var before []string
	progress := func(phase string, done, total int64) {
		if phase == "making the root disk" {
			before = entries(t, out)
			cancel()
		}
	}
	_, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: rootfs, Arch: "amd64", OutDir: out, CacheDir: debpkg.DefaultCacheDir}, progress)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build canceled before the disk: %v", err)
	}
	t.Logf("before the disk the output directory held %q; Build: %v", before, err)
	if !slices.Contains(before, "vmlinux") || !slices.Contains(before, "initrd.img") {
		t.Fatalf("the kernel and initrd were not there to clean up: %q", before)
	}
	if got := entries(t, out); !slices.Equal(got, []string{"caller-file"}) {
		t.Fatalf("left in the output directory: %q", got)
	}
}

func TestBuildStopsWhenCanceled(t *testing.T) {
	requireVMTools(t, "qemu-system-x86_64")
	out := callerDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var canceledAt time.Time
	progress := func(phase string, done, total int64) {
		if phase == "writing the kernel" && canceledAt.IsZero() {
			canceledAt = time.Now().Add(300 * time.Millisecond)
			time.AfterFunc(300*time.Millisecond, cancel) // while xz unpacks the vmlinux
		}
	}
	_, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: hostBusyboxTree(t), Arch: "amd64", OutDir: out, CacheDir: debpkg.DefaultCacheDir}, progress)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Build: %v, want context.Canceled", err)
	}
	t.Logf("Build returned %v after the cancel: %v", time.Since(canceledAt).Round(time.Millisecond), err)
	if got := entries(t, out); !slices.Equal(got, []string{"caller-file"}) {
		t.Fatalf("left in the output directory: %q", got)
	}
	if children := childProcesses(t); len(children) > 0 {
		t.Fatalf("processes Build started still run: %q", children)
	}
}

// childProcesses lists the processes whose parent is this test binary.
func childProcesses(t *testing.T) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var children []string
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
		end := strings.LastIndexByte(string(data), ')')
		fields := strings.Fields(string(data[end+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			children = append(children, string(data[:end+1]))
		}
	}
	return children
}
