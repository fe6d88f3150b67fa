package template

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// hostBusybox is where Debian's busybox-static package installs its binary.
const hostBusybox = hostreq.StaticBusybox

// fileSpec is one file or directory a builder writes.
type fileSpec struct {
	path    string // relative to the rootfs
	mode    os.FileMode
	content string // files only
}

// busyboxDirs returns the directory skeleton of a busybox rootfs.
func busyboxDirs() []fileSpec {
	return []fileSpec{
		{path: "bin", mode: 0o755}, {path: "sbin", mode: 0o755}, {path: "usr", mode: 0o755},
		{path: "usr/bin", mode: 0o755}, {path: "usr/sbin", mode: 0o755}, {path: "dev", mode: 0o755},
		{path: "proc", mode: 0o555}, {path: "sys", mode: 0o555}, {path: "tmp", mode: 0o777 | os.ModeSticky},
		{path: "root", mode: 0o700}, {path: "etc", mode: 0o755}, {path: "run", mode: 0o755},
		{path: "var", mode: 0o755}, {path: "var/log", mode: 0o755}, {path: "var/tmp", mode: 0o777 | os.ModeSticky},
		{path: "usr/lib", mode: 0o755}, {path: "usr/lib/polyvisor", mode: 0o755},
	}
}

// busyboxEtcFiles returns the configuration files of a busybox rootfs.
func busyboxEtcFiles() []fileSpec {
	return []fileSpec{
		{path: "etc/passwd", mode: 0o644, content: "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{path: "etc/group", mode: 0o644, content: "root:x:0:\nnogroup:x:65534:\n"},
		{path: "etc/hostname", mode: 0o644},
		{path: "etc/inittab", mode: 0o644, content: inittab("/bin/sh")},
	}
}

// busyboxFiles returns every file of a busybox rootfs but the binary and its applets.
func busyboxFiles() []fileSpec {
	return append(busyboxEtcFiles(), guestNetFiles()...)
}

// BuildBusybox fills the empty directory rootfs with a busybox system from the host's busybox-static (/bin/busybox, Debian package busybox-static).
//
// The tree is owned by host root; the caller shifts it into the container's id range.
// Applets are symlinks to /bin/busybox, computed from `busybox --list-full` (what
// `busybox --install -s` would make) so that nothing runs inside the new tree.
func BuildBusybox(ctx context.Context, rootfs string, progress Progress) error {
	progress = reportTo(progress)
	if err := requireEmptyDir(rootfs); err != nil {
		return fmt.Errorf("build busybox rootfs: %w", err)
	}
	if err := requireStaticBinary(hostBusybox); err != nil {
		return err
	}
	applets, err := busyboxApplets(ctx, hostBusybox)
	if err != nil {
		return err
	}
	return fillBusyboxTree(ctx, rootfs, hostBusybox, applets, progress)
}

// fillBusyboxTree makes the busybox system in the empty directory rootfs: the directory
// skeleton, the binary busybox copied to /bin/busybox, a symlink to it per applet (paths
// relative to /) and /etc.
func fillBusyboxTree(ctx context.Context, rootfs, busybox string, applets []string, progress Progress) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return fmt.Errorf("build busybox rootfs: %w", err)
	}
	defer root.Close()

	progress("creating directories", 0, 0)
	for _, dir := range busyboxDirs() {
		if err := makeDir(root, dir.path, dir.mode); err != nil {
			return fmt.Errorf("build busybox rootfs: %w", err)
		}
	}
	progress("copying busybox", 0, 0)
	if err := copyIntoRoot(root, busybox, "bin/busybox", 0o755); err != nil {
		return fmt.Errorf("build busybox rootfs: %w", err)
	}
	for i, applet := range applets {
		if err := canceled(ctx, "build busybox rootfs"); err != nil {
			return err
		}
		progress("installing applets", int64(i), int64(len(applets)))
		if err := root.Symlink("/bin/busybox", applet); err != nil {
			return fmt.Errorf("install busybox applet: %w", err)
		}
	}
	progress("writing /etc", 0, 0)
	for _, file := range busyboxFiles() {
		if err := root.WriteFile(file.path, []byte(file.content), file.mode); err != nil {
			return fmt.Errorf("build busybox rootfs: %w", err)
		}
	}
	if _, err := root.Lstat("sbin/init"); err != nil {
		return fmt.Errorf("busybox at %s has no init applet: %w", busybox, err)
	}
	return nil
}

// requireStaticBinary fails unless path is a statically linked executable, which alone runs
// in a rootfs without libraries.
func requireStaticBinary(path string) error {
	if _, err := hostreq.Lookup(path); err != nil {
		return err
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (package busybox, not busybox-static): install it with apt-get install busybox-static (make deps does)", path)
		}
	}
	return nil
}

// busyboxApplets returns the applet paths busybox reports, relative to /, such as "sbin/init".
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	var applets []string
	scanner := bufio.NewScanner(bytes.NewReader(out))
	for scanner.Scan() {
		applet := strings.TrimSpace(scanner.Text())
		if applet == "" || applet == "bin/busybox" {
			continue
		}
		if !filepath.IsLocal(applet) {
			return nil, fmt.Errorf("%s --list-full: unexpected applet path %q", busybox, applet)
		}
		applets = append(applets, applet)
	}
	return applets, nil
}

// makeDir creates dir inside root with exactly mode (the umask does not apply).
func makeDir(root *os.Root, dir string, mode os.FileMode) error {
	if err := root.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return root.Chmod(dir, mode)
}

// copyIntoRoot copies the host file src to dst inside root, with mode.
func copyIntoRoot(root *os.Root, src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
