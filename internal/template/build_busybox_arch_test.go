package template

import (
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/debpkg"
	"github.com/polyvisor/polyvisor/internal/hostreq"
)

func TestBuildBusyboxArchForArm64(t *testing.T) {
	rootfs := buildArchTree(t, "arm64", elf.EM_AARCH64)
	checkMode(t, rootfs, "bin/busybox", 0o755)
	checkMode(t, rootfs, "tmp", os.ModeDir|os.ModeSticky|0o777)
	if inittab, _ := os.ReadFile(filepath.Join(rootfs, "etc/inittab")); !strings.Contains(string(inittab), "::respawn:-/bin/sh\n") {
		t.Fatalf("/etc/inittab is %q", inittab)
	}
}

// TestBuildBusyboxArchForRiscv64 builds the tree of a busybox of another version than the
// host's: riscv64's comes from trixie, so its applets come from its own name table.
func TestBuildBusyboxArchForRiscv64(t *testing.T) {
	buildArchTree(t, "riscv64", elf.EM_RISCV)
}

// buildArchTree builds a busybox tree of debArch and checks that its
// busybox is for machine and its applets link to it; it returns the tree.
func buildArchTree(t *testing.T, debArch string, machine elf.Machine) string {
	t.Helper()
	requireRoot(t)
	requireCommand(t, "apt-get")
	hostreq.Need(t, hostBusybox)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rootfs := t.TempDir()
	if err := BuildBusyboxArch(ctx, rootfs, debArch, debpkg.DefaultCacheDir, nil); err != nil {
		t.Fatal(err)
	}
	bin, err := elf.Open(filepath.Join(rootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	if bin.Machine != machine {
		t.Fatalf("/bin/busybox is for %v, want %v", bin.Machine, machine)
	}
	for _, applet := range []string{"sbin/init", "bin/sh", "usr/bin/wc", "sbin/poweroff"} {
		if target, err := os.Readlink(filepath.Join(rootfs, applet)); err != nil || target != "/bin/busybox" {
			t.Errorf("/%s -> %q, %v", applet, target, err)
		}
	}
	return rootfs
}

// TestAppletNamesMatchBusyboxList checks the applet name table reader against what the host's
// busybox itself lists.
func TestAppletNamesMatchBusyboxList(t *testing.T) {
	hostreq.Need(t, hostBusybox)
	listed, err := busyboxApplets(context.Background(), hostBusybox)
	if err != nil {
		t.Fatal(err)
	}
	read, err := foreignApplets(hostBusybox, listed)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	slices.Sort(read)
	if !slices.Equal(listed, read) {
		t.Fatalf("the name table gives %d applets, busybox --list-full %d:\n%q\n%q", len(read), len(listed), read, listed)
	}
	if _, err := appletNames([]byte("\x7fELF no table here")); err == nil {
		t.Error("a binary without a name table accepted")
	}
	if _, err := appletNames([]byte("x\x00[\x00[[\x00ls\x00\x00")); err == nil {
		t.Error("a name table without sh and init accepted")
	}
}

func TestBuildBusyboxArchRefusesNonEmptyDir(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "something"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BuildBusyboxArch(context.Background(), rootfs, "arm64", t.TempDir(), nil); err == nil {
		t.Fatal("BuildBusyboxArch into a non-empty directory succeeded")
	}
}

func TestBusyboxVersionIgnoresBinNMU(t *testing.T) {
	dir := t.TempDir()
	write := func(name, banner string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("\x7fELF\x00junk\x00"+banner+"\x00more"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	host := write("host", "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)")
	rebuilt := write("rebuilt", "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b2)")
	plain := write("plain", "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1)")
	newer := write("newer", "BusyBox v1.36.1 (Debian 1:1.36.1-9)")
	none := write("none", "no banner here")
	if err := requireSameBusybox(host, rebuilt); err != nil {
		t.Errorf("binNMUs of one version differ: %v", err)
	}
	if err := requireSameBusybox(host, plain); err != nil {
		t.Errorf("a binNMU and its source version differ: %v", err)
	}
	if err := requireSameBusybox(host, newer); err == nil {
		t.Error("busybox 1.35.0 and 1.36.1 taken for the same")
	}
	if err := requireSameBusybox(host, none); err == nil {
		t.Error("a file without banner accepted")
	}
}
