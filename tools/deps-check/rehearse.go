package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// insideArg makes the command the rehearsal's child, in its own mount
// namespace.
const insideArg = "__inside"

// rehearsalTimeout bounds the whole install: a hung download must not hang
// make test.
const rehearsalTimeout = 10 * time.Minute

// scriptPackages returns the packages script installs (its --list).
func scriptPackages(script string) ([]string, error) {
	bash, err := hostreq.Lookup("bash")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bash, script, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", script, err)
	}
	return strings.Fields(string(out)), nil
}

// rehearse runs script and then the requirement check in a fresh overlay of
// base. The child that does it lives in a mount namespace of its own, so
// every mount it makes goes with it, whatever happens to it.
func rehearse(ctx context.Context, base, polyvisor, script string) error {
	work, err := os.MkdirTemp("", "polyvisor-deps-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, rehearsalTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, insideArg, base, work, polyvisor, script)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// CLONE_NEWNS here makes Go remount / private in the child first, so
	// nothing it mounts reaches the host's namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("the rehearsal did not finish within %s", rehearsalTimeout)
		}
		return errors.New("the rehearsal in a fresh root failed (see above)")
	}
	return nil
}

// inside is the child: it mounts the fresh root, installs with the script
// and checks the requirements there.
func inside(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: %s BASE WORK POLYVISOR SCRIPT", insideArg)
	}
	base, work, polyvisor, script := args[0], args[1], args[2], args[3]
	root, err := freshRoot(base, work)
	if err != nil {
		return err
	}
	if err := copyInto(root, polyvisor, "usr/local/bin/polyvisor", 0o755); err != nil {
		return err
	}
	if err := copyInto(root, script, "root/deps.sh", 0o755); err != nil {
		return err
	}
	began := time.Now()
	fmt.Println("deps-check: running", script, "as root in a fresh Debian root")
	if err := inRoot(root, os.Stdout, "/bin/bash", "/root/deps.sh"); err != nil {
		return fmt.Errorf("%s in a fresh root: %w", script, err)
	}
	fmt.Printf("deps-check: %s took %s\n", script, time.Since(began).Round(time.Second))
	var out bytes.Buffer
	checkErr := inRoot(root, &out, "/usr/local/bin/polyvisor", "host", "check", "--requirements", "--format", "json")
	var check api.HostCheck
	if err := json.Unmarshal(out.Bytes(), &check); err != nil {
		return fmt.Errorf("polyvisor host check --requirements in the fresh root: %v: %w", checkErr, err)
	}
	missing := hostreq.Missing(check.Requirements)
	for _, s := range missing {
		fmt.Printf("deps-check: MISSING after %s: %s (%s) from package %s, needed for %s\n", script, s.Name, s.Kind, s.Package, s.Feature)
	}
	if len(missing) > 0 {
		return fmt.Errorf("declared requirements missing after %s in a fresh root: it must install %s", script, strings.TrimPrefix(check.InstallLine, "apt-get install "))
	}
	if checkErr != nil {
		return fmt.Errorf("polyvisor host check --requirements in the fresh root: %w", checkErr)
	}
	fmt.Printf("deps-check: all %d declared requirements present in the fresh root\n", countInstalled(check.Requirements))
	return nil
}

func countInstalled(statuses []hostreq.Status) int {
	n := 0
	for _, s := range statuses {
		if s.Installed() {
			n++
		}
	}
	return n
}

// freshRoot mounts an overlay of base under work and prepares it as a fresh
// machine of this kind is: the host's apt configuration and resolver, /proc,
// /dev, and no service started by a package's scripts.
func freshRoot(base, work string) (string, error) {
	upper, overlayWork, root := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "root")
	for _, dir := range []string{upper, overlayWork, root} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", err
		}
	}
	options := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, upper, overlayWork)
	if err := syscall.Mount("overlay", root, "overlay", 0, options); err != nil {
		return "", fmt.Errorf("mount the fresh root: %w", err)
	}
	// apt as this kind of machine has it when new: its sources (and the
	// settings that go with them, such as a snapshot's validity), keyrings,
	// and a resolver to reach the mirror.
	if err := os.RemoveAll(filepath.Join(root, "etc/apt")); err != nil {
		return "", err
	}
	for _, path := range []string{"/etc/apt", "/usr/share/keyrings"} {
		if err := copyTree(path, filepath.Join(root, path)); err != nil {
			return "", fmt.Errorf("copy the host's %s: %w", path, err)
		}
	}
	resolver := filepath.Join(root, "etc/resolv.conf")
	os.Remove(resolver)
	if err := copyInto(root, "/etc/resolv.conf", "etc/resolv.conf", 0o644); err != nil { // through a link, if it is one
		return "", fmt.Errorf("copy the host's resolver: %w", err)
	}
	// Packages' scripts must not start services in a chroot.
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return "", err
	}
	if err := syscall.Mount("proc", filepath.Join(root, "proc"), "proc", 0, ""); err != nil {
		return "", fmt.Errorf("mount /proc: %w", err)
	}
	if err := syscall.Mount("/dev", filepath.Join(root, "dev"), "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return "", fmt.Errorf("bind /dev: %w", err)
	}
	return root, nil
}

// inRoot runs argv chrooted into root as a fresh login would, its output to
// out and its errors to ours.
func inRoot(root string, out io.Writer, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...) // the path is resolved inside root, after the chroot
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	return cmd.Run()
}

// copyInto copies the host file src to rel inside root.
func copyInto(root, src, rel string, mode fs.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	dst := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// copyTree copies a host file or directory of plain files, directories and
// symbolic links to dst, replacing what is there.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil // sockets and the like are no configuration
	})
}
