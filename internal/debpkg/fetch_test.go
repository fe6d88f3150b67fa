package debpkg

import (
	"context"
	"debug/elf"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

func requireRootAndApt(t *testing.T) {
	t.Helper()
	testgate.RequireRoot(t, "apt-get download as root, with the host's keyring")
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		hostreq.Need(t, tool)
	}
}

func TestFetchAndExtractForeignBusybox(t *testing.T) {
	requireRootAndApt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := t.TempDir()
	deb, err := Fetch(ctx, cache, "busybox-static", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(deb), "busybox-static_") || !strings.HasSuffix(deb, "_arm64.deb") {
		t.Fatalf("fetched %s", deb)
	}
	leftovers, _ := filepath.Glob(filepath.Join(cache, ".download-*"))
	if len(leftovers) > 0 {
		t.Fatalf("temporary download directories left: %q", leftovers)
	}
	start := time.Now()
	again, err := Fetch(ctx, cache, "busybox-static", "arm64")
	if err != nil || again != deb {
		t.Fatalf("second fetch: %s, %v", again, err)
	}
	t.Logf("cached fetch took %v", time.Since(start).Round(time.Millisecond))

	dir := filepath.Join(t.TempDir(), "unpacked")
	if err := Extract(ctx, deb, dir); err != nil {
		t.Fatal(err)
	}
	bin, err := elf.Open(filepath.Join(dir, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	if bin.Machine != elf.EM_AARCH64 {
		t.Fatalf("bin/busybox is for %v, want EM_AARCH64", bin.Machine)
	}
	for _, prog := range bin.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Fatal("busybox-static:arm64 is dynamically linked")
		}
	}
}

func TestResolveMetaFindsTheVersionedKernel(t *testing.T) {
	requireRootAndApt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cache := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		real, err := ResolveMeta(ctx, cache, "linux-image-"+arch, arch)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(real, "linux-image-") || !strings.HasSuffix(real, "-"+arch) || real == "linux-image-"+arch {
			t.Fatalf("linux-image-%s resolves to %q", arch, real)
		}
		t.Logf("linux-image-%s -> %s", arch, real)
	}
}

func TestNamesThatLookLikeOptionsAreRefused(t *testing.T) {
	ctx := context.Background()
	if _, err := Fetch(ctx, t.TempDir(), "--help", "amd64"); err == nil {
		t.Fatal("Fetch accepted package name --help")
	}
	if _, err := prepareApt(ctx, t.TempDir(), "-o"); err == nil {
		t.Fatal("prepareApt accepted architecture -o")
	}
	if _, err := ResolveMeta(ctx, t.TempDir(), "linux-image-amd64", "amd64 arm64"); err == nil {
		t.Fatal("ResolveMeta accepted architecture with a space")
	}
}
