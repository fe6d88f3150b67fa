package ociimage

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

func TestWriteLayoutRoundTrip(t *testing.T) {
	testgate.RequireRoot(t, "chowning a tree to root needs root")
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	mustRun(t,
		os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755),
		os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755),
		os.Mkdir(filepath.Join(rootfs, "private"), 0o700),
		os.WriteFile(filepath.Join(rootfs, "bin/tool"), []byte("#!tool"), 0o755),
		os.Link(filepath.Join(rootfs, "bin/tool"), filepath.Join(rootfs, "bin/tool2")),
		os.Symlink("tool", filepath.Join(rootfs, "bin/sh")),
		os.Symlink("/usr/lib", filepath.Join(rootfs, "lib")),
		os.WriteFile(filepath.Join(rootfs, "etc/hostname"), []byte("guest\n"), 0o644),
		os.Chown(filepath.Join(rootfs, "etc/hostname"), 1000, 1001),
		syscall.Mkfifo(filepath.Join(rootfs, "private/fifo"), 0o600),
	)
	stamp := time.Unix(1.5e9, 0)
	filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			os.Chtimes(p, stamp, stamp)
		}
		return err
	})

	dest := filepath.Join(t.TempDir(), "layout")
	cfg := Config{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}, Env: []string{"A=b"}, WorkingDir: "/etc"}
	if err := WriteLayout(t.Context(), rootfs, dest, cfg); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(t.Context(), rootfs, dest, cfg); err == nil {
		t.Error("WriteLayout over an existing layout succeeded, want an error")
	}
	im, err := Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Unpack(t.Context(), out, rootTree, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := listTree(t, out), listTree(t, rootfs); got != want {
		t.Errorf("unpacked tree differs from the source:\ngot:\n%s\nwant:\n%s", got, want)
	}
	a, b := inode(t, filepath.Join(out, "bin/tool")), inode(t, filepath.Join(out, "bin/tool2"))
	if a != b {
		t.Error("bin/tool2 is no longer a hardlink of bin/tool")
	}
	args, env, cwd, _, err := im.Process()
	if err != nil || !slices.Equal(args, []string{"/bin/sh", "-c", "true"}) || !slices.Contains(env, "A=b") || cwd != "/etc" {
		t.Errorf("process %q %q %q %v", args, env, cwd, err)
	}
	if im.Config.OS != "linux" || im.Config.Architecture != hostPlatform.Architecture {
		t.Errorf("platform %s/%s, want the host's", im.Config.OS, im.Config.Architecture)
	}
}

func mustRun(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// listTree describes every entry under root below the root itself: type,
// mode, owner, mtime (not for symlinks) and content or target.
func listTree(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v %d:%d", rel, info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q mtime=%d", b, info.ModTime().Unix())
		default:
			line += fmt.Sprintf(" mtime=%d", info.ModTime().Unix())
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}
