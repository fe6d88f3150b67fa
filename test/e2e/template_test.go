package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestDebianTemplateOnDisk checks the Debian template the suite built once:
// described, digested, small, and a tree that boots as a container.
func TestDebianTemplateOnDisk(t *testing.T) {
	requireRoot(t)
	d := env.main
	var tmpl api.Template
	if err := jsonUnmarshal(d.Must(t, "template", "show", "debian", "--format", "json"), &tmpl); err != nil {
		t.Fatal(err)
	}
	if tmpl.Source != "debian" || tmpl.Suite != "bookworm" || !strings.HasPrefix(tmpl.Digest, "sha256:") || len(tmpl.Digest) != 71 {
		t.Errorf("template: %+v", tmpl)
	}
	if tmpl.Size < 50<<20 || tmpl.Size > 400<<20 {
		t.Errorf("template size %d MiB, want a minbase system (about 130 MiB)", tmpl.Size>>20)
	}
	rootfs := filepath.Join(layout.New(d.StateDir).TemplatesDir(), "debian", "rootfs")
	if target, err := os.Readlink(filepath.Join(rootfs, "usr/sbin/init")); err != nil || target != "/bin/busybox" {
		t.Errorf("/sbin/init -> %q, %v; want busybox init", target, err)
	}
	if inittab, _ := os.ReadFile(filepath.Join(rootfs, "etc/inittab")); !strings.Contains(string(inittab), "console::respawn:-/bin/bash\n") {
		t.Errorf("/etc/inittab is %q", inittab)
	}
	if hostname, _ := os.ReadFile(filepath.Join(rootfs, "etc/hostname")); len(hostname) != 0 {
		t.Errorf("/etc/hostname is %q: the build host's name leaked in", hostname)
	}
	debs, _ := filepath.Glob(filepath.Join(rootfs, "var/cache/apt/archives/*.deb"))
	lists, _ := filepath.Glob(filepath.Join(rootfs, "var/lib/apt/lists/*_Packages"))
	if len(debs)+len(lists) > 0 {
		t.Errorf("apt caches left in the template: %d .deb files, %d package lists", len(debs), len(lists))
	}
	st := mustStat(t, filepath.Join(rootfs, "etc/passwd"))
	if st.Uid != 1000000 || st.Gid != 1000000 {
		t.Errorf("/etc/passwd owned by %d:%d, want the shifted root 1000000", st.Uid, st.Gid)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), layout.New(d.StateDir).TemplatesDir()) {
		t.Error("something is still mounted inside the templates dir after the build")
	}
}

func mustStat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}
