package template

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// debianName matches the suite and architecture names debootstrap accepts from us; it keeps
// a name from being read as an option.
var debianName = lazyre.New(`^[a-z0-9][a-z0-9.+-]*$`)

// BuildDebian debootstraps Debian SUITE (--variant=minbase) for arch (Debian arch name, e.g. amd64) into rootfs, mirror from the host's apt sources.
//
// The tree is owned by host root; the caller shifts it into the container's id map. /sbin/init
// is busybox init, from Debian's own busybox package: bookworm's busybox 1.35 (the dynamically
// linked one, not busybox-static) has the init applet, and taking it from the suite's archive
// keeps it the target's arch and under dpkg, where a copy of the host's busybox-static would be
// the host's arch and a file dpkg does not know. On failure the mounts debootstrap made inside
// rootfs are undone; the files it wrote are left for the caller, who owns rootfs, to remove.
func BuildDebian(ctx context.Context, rootfs, suite, arch string, progress Progress) error {
	progress = reportTo(progress)
	if err := Debootstrap(ctx, rootfs, suite, arch, []string{"busybox"}, progress); err != nil {
		return err
	}
	if err := finishDebian(rootfs, progress); err != nil {
		return fmt.Errorf("build debian %s: %w", suite, err)
	}
	return nil
}

// Debootstrap installs Debian SUITE's minimal base (--variant=minbase) for arch, plus the
// packages in include, into the empty directory rootfs, from the mirror in the host's apt
// sources, reporting progress. Nothing is left mounted inside rootfs.
func Debootstrap(ctx context.Context, rootfs, suite, arch string, include []string, progress Progress) error {
	progress = reportTo(progress)
	if !debianName().MatchString(suite) || !debianName().MatchString(arch) {
		return fmt.Errorf("build debian: invalid suite %q or arch %q", suite, arch)
	}
	for _, pkg := range include {
		if !debianName().MatchString(pkg) {
			return fmt.Errorf("build debian: invalid package name %q", pkg)
		}
	}
	debootstrap, err := hostreq.Lookup("debootstrap")
	if err != nil {
		return err
	}
	if err := requireEmptyDir(rootfs); err != nil {
		return fmt.Errorf("build debian %s: %w", suite, err)
	}
	mirror, err := MirrorFromHost("/")
	if err != nil {
		return fmt.Errorf("build debian %s: %w", suite, err)
	}
	args := []string{"--variant=minbase", "--arch", arch}
	if len(include) > 0 {
		args = append(args, "--include="+strings.Join(include, ","))
	}
	return runDebootstrap(ctx, debootstrap, append(args, suite, rootfs, mirror), suite, mirror, rootfs, progress)
}

// runDebootstrap runs debootstrap in its own process group, reporting its "I:" lines as
// progress. Cancelling ctx kills the whole group (debootstrap and the dpkg it runs).
func runDebootstrap(ctx context.Context, debootstrap string, args []string, suite, mirror, rootfs string, progress Progress) (err error) {
	cmd := exec.CommandContext(ctx, debootstrap, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	output, writer := io.Pipe()
	cmd.Stdout, cmd.Stderr = writer, writer

	// Whatever happens, leave no mount behind: a bind-mounted /dev inside rootfs would let
	// the caller's RemoveAll delete the host's device nodes.
	defer func() { err = errors.Join(err, unmountUnder(rootfs)) }()

	tail := make(chan []string, 1)
	go func() { tail <- reportDebootstrap(output, progress) }()
	runErr := cmd.Run()
	writer.Close()
	lines := <-tail
	if err := canceled(ctx, "debootstrap "+suite); err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("debootstrap %s from %s: %w: %s", suite, mirror, runErr, strings.Join(lines, "; "))
	}
	return nil
}

// reportDebootstrap turns debootstrap's output into progress reports and returns its last
// lines, the warnings and errors among them first, for an error message.
func reportDebootstrap(output io.Reader, progress Progress) []string {
	var parser debootstrapProgress
	var last, problems []string
	scanner := bufio.NewScanner(output)
	for scanner.Scan() {
		line := scanner.Text()
		if phase, done, total, ok := parser.parse(line); ok {
			progress(phase, done, total)
		}
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			problems = keepLast(problems, line, 4)
		}
		last = keepLast(last, line, 4)
	}
	io.Copy(io.Discard, output) // a line too long for the scanner: keep draining
	if len(problems) > 0 {
		return problems
	}
	return last
}

func keepLast(lines []string, line string, n int) []string {
	lines = append(lines, line)
	if len(lines) > n {
		lines = lines[1:]
	}
	return lines
}

// finishDebian makes the debootstrapped tree bootable by busybox init and small.
func finishDebian(rootfs string, progress Progress) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	progress("installing busybox init", 0, 0)
	if _, err := root.Stat("bin/busybox"); err != nil {
		return fmt.Errorf("busybox missing after debootstrap: %w", err)
	}
	// minbase installs no init system, so /sbin/init is normally absent; a Debian init that
	// is there is kept.
	if _, err := root.Lstat("sbin/init"); errors.Is(err, fs.ErrNotExist) {
		if err := root.Symlink("/bin/busybox", "sbin/init"); err != nil {
			return fmt.Errorf("link /sbin/init to busybox: %w", err)
		}
	}
	if err := writeInittab(root, "/bin/bash"); err != nil {
		return err
	}
	// debootstrap copies the host's hostname in; a template has none of its own.
	if err := root.WriteFile("etc/hostname", nil, 0o644); err != nil {
		return fmt.Errorf("clear /etc/hostname: %w", err)
	}
	progress("cleaning apt caches", 0, 0)
	return cleanAptCaches(root)
}

// cleanAptCaches removes downloaded packages and package lists, which apt-get update and
// apt-get install fetch again, keeping the directories apt expects.
func cleanAptCaches(root *os.Root) error {
	for _, dir := range []string{"var/cache/apt/archives", "var/cache/apt", "var/lib/apt/lists"} {
		entries, err := fs.ReadDir(root.FS(), dir)
		if err != nil {
			return fmt.Errorf("clean apt caches: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || name == "lock" || dir == "var/cache/apt/archives" && !strings.HasSuffix(name, ".deb") {
				continue
			}
			if err := root.Remove(dir + "/" + name); err != nil {
				return fmt.Errorf("clean apt caches: %w", err)
			}
		}
	}
	return nil
}
