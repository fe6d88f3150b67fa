package e2e

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// sharedBase is the first host id of the shared id map: the templates'
// range, and every guest's before isolated maps.
const sharedBase = 1000000

// owner returns the host uid and gid of path.
func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// isolatedMap checks that g has an isolated id map of its own and returns
// its base.
func isolatedMap(t *testing.T, g api.Guest) uint32 {
	t.Helper()
	m := g.IDMap
	if m == nil || m.Kind != "isolated" || m.HostUID == sharedBase || m.HostUID != m.HostGID || m.Size != 65536 {
		t.Fatalf("guest %s: id map %+v, want an isolated range of 65536 ids of its own", g.Name, m)
	}
	return m.HostUID
}

// TestIsolatedGuestsHaveHostIDsOfTheirOwn: by default every unprivileged
// container gets a 65536-id host range no other guest holds; its init runs
// as the range's first id, its files (new ones, and the template's copied
// up through the idmapped lower layer) are owned in its range on the host
// and read as the guest's own ids inside; a --copy guest's tree is shifted
// into its range; export writes the guest's ids; a copy gets a range of its
// own; delete frees the range and leaves no mount.
func TestIsolatedGuestsHaveHostIDsOfTheirOwn(t *testing.T) {
	requireRoot(t)
	d := env.main
	l := layout.New(d.StateDir)
	a := launch(t, d, "busybox", "e2e-iso-a")
	b := launch(t, d, "busybox", "e2e-iso-b", "--copy")
	baseA, baseB := isolatedMap(t, a), isolatedMap(t, b)
	if baseA < baseB+65536 && baseB < baseA+65536 {
		t.Errorf("ranges overlap: %d and %d", baseA, baseB)
	}
	for _, g := range []struct {
		api.Guest
		base uint32
	}{{a, baseA}, {b, baseB}} {
		uidMap, err := os.ReadFile("/proc/" + strconv.Itoa(g.PID) + "/uid_map")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] != strconv.Itoa(int(g.base)) || f[2] != "65536" {
			t.Errorf("%s's init has uid_map %q, want 0 %d 65536", g.Name, uidMap, g.base)
		}
		if uid := hostUID(t, g.PID); uid != int(g.base) {
			t.Errorf("%s's init runs as host uid %d, want %d", g.Name, uid, g.base)
		}
		// Inside, the template's files are root's and a user's files the user's.
		d.Must(t, "exec", g.Name, "--", "sh", "-c", "touch /made-here /etc/passwd && touch /by-user && chown 1000:1000 /by-user")
		if out := d.Must(t, "exec", g.Name, "--", "stat", "-c", "%u:%g", "/bin/busybox", "/etc/passwd", "/by-user"); out != "0:0\n0:0\n1000:1000\n" {
			t.Errorf("%s sees owners %q, want 0:0 0:0 1000:1000", g.Name, out)
		}
	}
	// On the host, the overlay guest's upper dir holds its own ids, the
	// copied-up template file too; the copy guest's whole tree does.
	upper := filepath.Join(l.GuestDir(a.Name), "disks", "layer", "upper") // in its disk quota's image, mounted while it runs
	for path, want := range map[string]uint32{"made-here": baseA, "etc/passwd": baseA, "by-user": baseA + 1000} {
		if uid, gid := owner(t, filepath.Join(upper, path)); uid != want || gid != want {
			t.Errorf("%s's /%s is %d:%d on the host, want %d", a.Name, path, uid, gid, want)
		}
	}
	tree := filepath.Join(l.GuestDir(b.Name), "disks", "rootfs")
	for path, want := range map[string]uint32{"bin/busybox": baseB, "made-here": baseB, "by-user": baseB + 1000} {
		if uid, gid := owner(t, filepath.Join(tree, path)); uid != want || gid != want {
			t.Errorf("%s's /%s is %d:%d on the host, want %d", b.Name, path, uid, gid, want)
		}
	}
	if uid, _ := owner(t, filepath.Join(l.TemplatesDir(), "busybox", "rootfs", "bin", "busybox")); uid != sharedBase {
		t.Errorf("the template's /bin/busybox is owned by %d, want it left in the shared range", uid)
	}

	t.Run("export-writes-the-guests-ids", func(t *testing.T) {
		d.Must(t, "stop", a.Name)
		out := filepath.Join(t.TempDir(), "a.tar")
		d.Must(t, "export", a.Name, out, "--format", "tar")
		found := map[string]string{}
		readTar(t, out, func(hdr *tar.Header, _ []byte) {
			found[strings.TrimPrefix(hdr.Name, "./")] = strconv.Itoa(hdr.Uid) + ":" + strconv.Itoa(hdr.Gid)
		})
		for path, want := range map[string]string{"bin/busybox": "0:0", "etc/passwd": "0:0", "made-here": "0:0", "by-user": "1000:1000"} {
			if found[path] != want {
				t.Errorf("the export's %s is owned by %q, want %s", path, found[path], want)
			}
		}
	})

	t.Run("a-copy-gets-a-range-of-its-own", func(t *testing.T) {
		dst := "e2e-iso-a-copy"
		t.Cleanup(func() { d.Run("delete", "--force", dst) })
		d.Must(t, "copy", a.Name, dst)
		c := info(t, d, dst)
		baseC := isolatedMap(t, c)
		if baseC == baseA || baseC == baseB {
			t.Fatalf("the copy's range %d is its source's or another guest's", baseC)
		}
		// The copy's upper dir is in its own quota image, mounted while it runs.
		d.Must(t, "start", dst)
		cu := filepath.Join(l.GuestDir(dst), "disks", "layer", "upper")
		for path, want := range map[string]uint32{"made-here": baseC, "etc/passwd": baseC, "by-user": baseC + 1000} {
			if uid, gid := owner(t, filepath.Join(cu, path)); uid != want || gid != want {
				t.Errorf("the copy's /%s is %d:%d on the host, want %d", path, uid, gid, want)
			}
		}
		if out := d.Must(t, "exec", dst, "--", "stat", "-c", "%u:%g", "/bin/busybox", "/by-user"); out != "0:0\n1000:1000\n" {
			t.Errorf("the copy sees owners %q, want 0:0 1000:1000", out)
		}
		d.Must(t, "delete", "--force", dst)
	})

	t.Run("delete-frees-the-range-and-leaves-no-mount", func(t *testing.T) {
		dir := l.GuestDir(a.Name)
		d.Must(t, "start", a.Name)
		if !mounted(t, filepath.Join(dir, "lower")) {
			t.Fatal("a running isolated overlay guest has no idmapped template mount")
		}
		d.Must(t, "delete", "--force", a.Name)
		if m := mountsUnder(t, dir); len(m) > 0 {
			t.Errorf("mounts left after delete: %v", m)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the guest's directory is still there: %v", err)
		}
		next := launch(t, d, "busybox", "e2e-iso-next")
		if base := isolatedMap(t, next); base != baseA {
			t.Errorf("the next guest got range %d, want the deleted guest's %d (the lowest free)", base, baseA)
		}
	})
}

// mountsUnder lists the host's mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	found, err := fsutil.MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestIsolatedGuestsDoNotShareAPerUIDQuota: the kernel counts the pipe
// buffer pages of each host uid (fs.pipe-user-pages-soft); past it, an
// unprivileged user's new pipes get two pages and cannot grow. A guest
// that takes the whole quota leaves an isolated guest untouched; with
// --idmap shared (the model before isolated maps) it starves the other.
func TestIsolatedGuestsDoNotShareAPerUIDQuota(t *testing.T) {
	requireRoot(t)
	soft, err := os.ReadFile("/proc/sys/fs/pipe-user-pages-soft")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(soft)) == "0" {
		t.Skip("skipping: fs.pipe-user-pages-soft is 0 on this host: no per-uid pipe quota to share")
	}
	program := filepath.Join(t.TempDir(), "quota")
	build := exec.Command(hostreq.Need(t, "go"), "build", "-o", program, "./testdata/quota")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the quota program: %v: %s", err, out)
	}
	d := env.main
	for _, c := range []struct {
		name, idmap, want string
	}{
		{"isolated", "isolated", "size 65536 grow ok\n"},
		{"shared", "shared", "size 8192 grow denied\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hog := launch(t, d, "busybox", "e2e-quota-hog-"+c.name, "--idmap", c.idmap)
			other := launch(t, d, "busybox", "e2e-quota-other-"+c.name, "--idmap", c.idmap)
			for _, g := range []api.Guest{hog, other} {
				if g.IDMap == nil || g.IDMap.Kind != c.idmap {
					t.Fatalf("%s: id map %+v, want %s", g.Name, g.IDMap, c.idmap)
				}
				copyProgram(t, d, g.Name, program)
			}
			if out := d.Must(t, "exec", other.Name, "--", "/tmp/quota", "probe"); out != "size 65536 grow ok\n" {
				t.Fatalf("before the hog, %s's pipe: %q; want the default 64 KiB, growable", other.Name, out)
			}
			d.Must(t, "exec", hog.Name, "--", "sh", "-c", "/tmp/quota hog </dev/null >/tmp/hog.out 2>&1 &")
			// Delete the hog first: in the shared range, it starves every
			// shared guest on the host while it runs.
			defer d.Run("delete", "--force", hog.Name)
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, _, _ := d.Run("exec", hog.Name, "--", "cat", "/tmp/hog.out")
				if strings.HasPrefix(out, "held ") {
					t.Logf("%s: %s", hog.Name, strings.TrimSpace(out))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the hog did not report within 30 s: %q", out)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if out := d.Must(t, "exec", other.Name, "--", "/tmp/quota", "probe"); out != c.want {
				t.Errorf("with %s maps, the other guest's pipe after the hog: %q, want %q", c.idmap, out, c.want)
			}
		})
	}
}

// copyProgram copies the static program at path into the guest as /tmp/NAME.
func copyProgram(t *testing.T, d *testenv.Daemon, name, path string) {
	t.Helper()
	program, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := "/tmp/" + filepath.Base(path)
	if _, errOut, code := d.RunInput(string(program), "exec", name, "--", "sh", "-c", "cat > "+dst+" && chmod 755 "+dst); code != 0 {
		t.Fatalf("copy %s into %s: %s", filepath.Base(path), name, errOut)
	}
}
