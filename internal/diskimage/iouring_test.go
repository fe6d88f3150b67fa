package diskimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// The test binary stands in for qemu-img in
// TestConvertFallsBackWhereIOUringIsRefused: it notes its arguments, makes
// the kernel refuse io_uring to it and what it runs, and becomes the real
// qemu-img, which then meets a host without io_uring.
const (
	realQemuImgEnv = "DISKIMAGE_TEST_REAL_QEMU_IMG"
	runsLogEnv     = "DISKIMAGE_TEST_RUNS"
)

func TestMain(m *testing.M) {
	if real := os.Getenv(realQemuImgEnv); real != "" && filepath.Base(os.Args[0]) == "qemu-img" {
		fmt.Fprintln(os.Stderr, execRefusingIOUring(real))
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// execRefusingIOUring logs this run's arguments and execs real under a
// seccomp filter that fails io_uring_setup with EPERM, as a kernel with
// io_uring_disabled does. It returns only on failure.
func execRefusingIOUring(real string) error {
	log, err := os.OpenFile(os.Getenv(runsLogEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintln(log, strings.Join(os.Args[1:], " "))
	log.Close()
	// The filter binds the thread that installs it, and exec keeps it.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_IO_URING_SETUP, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return err
	}
	return unix.Exec(real, append([]string{real}, os.Args[1:]...), os.Environ())
}

// TestConvertFallsBackWhereIOUringIsRefused converts with the real
// qemu-img on a host that refuses io_uring: the first run asks for it and
// fails, the second reads through qemu-img's thread pool, and the content
// is the source's.
func TestConvertFallsBackWhereIOUringIsRefused(t *testing.T) {
	real := hostreq.Need(t, "qemu-img")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "qemu-img")); err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(dir, "runs")
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv(realQemuImgEnv, real)
	t.Setenv(runsLogEnv, runs)

	src, dst := filepath.Join(dir, "src.qcow2"), filepath.Join(dir, "dst.vmdk")
	writeTestImage(t, real, src)
	if err := Convert(context.Background(), src, "qcow2", dst, "vmdk", nil, nil); err != nil {
		t.Fatalf("Convert on a host refusing io_uring: %v", err)
	}
	data, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "aio=io_uring") || strings.Contains(lines[1], "io_uring") {
		t.Errorf("qemu-img runs:\n%s\nwant one asking for io_uring, then one without", data)
	}
	if out, err := exec.Command(real, "compare", "-q", src, dst).CombinedOutput(); err != nil {
		t.Errorf("converted image differs: %v %s", err, out)
	}
}

// TestConvertReadsASourceWhoseNameHasCommas converts a file whose name
// holds the separator of qemu-img's --image-opts.
func TestConvertReadsASourceWhoseNameHasCommas(t *testing.T) {
	real := hostreq.Need(t, "qemu-img")
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a,file.driver=null-co,b.qcow2"), filepath.Join(dir, "dst.qcow2")
	writeTestImage(t, real, src)
	if err := Convert(context.Background(), src, "qcow2", dst, "qcow2", nil, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(real, "compare", "-q", "-f", "qcow2", "-F", "qcow2", src, dst).CombinedOutput(); err != nil {
		t.Errorf("converted image differs: %v %s", err, out)
	}
}

// writeTestImage makes a 32 MiB qcow2 image at path holding a recognisable
// pattern at a few offsets.
func writeTestImage(t *testing.T, qemuImg, path string) {
	t.Helper()
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", path, "32M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	raw := filepath.Join(t.TempDir(), "raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5 << 20, 31 << 20} {
		if _, err := f.WriteAt([]byte(strings.Repeat("polyvisor ", 1000)), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Truncate(32 << 20)
	f.Close()
	if out, err := exec.Command(qemuImg, "convert", "-n", "-f", "raw", "-O", "qcow2", raw, path).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
}

// TestConvertFollowsTheSourcesBackingChain converts a guest's overlay, as
// an export does: what its backing file holds is in the result.
func TestConvertFollowsTheSourcesBackingChain(t *testing.T) {
	real := hostreq.Need(t, "qemu-img")
	dir := t.TempDir()
	base, overlay, dst := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "root.qcow2"), filepath.Join(dir, "out.vmdk")
	writeTestImage(t, real, base)
	if out, err := exec.Command(real, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := Convert(context.Background(), overlay, "qcow2", dst, "vmdk", []string{"-o", "subformat=streamOptimized"}, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(real, "compare", "-q", base, dst).CombinedOutput(); err != nil {
		t.Errorf("the export lacks its base's content: %v %s", err, out)
	}
}
