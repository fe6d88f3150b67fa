package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// A root libvirtd ignores every path setting of its QEMU driver: its
// state, definitions, logs and cache are always /run/libvirt,
// /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt
// (qemu:///session is for unprivileged users only). The virsh peer's
// libvirtd therefore runs in a mount namespace of its own in which those
// five directories are directories of Env.Dir, and in a network namespace
// of its own, so that its network and nwfilter drivers cannot touch the
// host's links or firewall even by accident. The host sees none of it.
//
// libvirtdNamespace is the shell script, run by unshare in the new
// namespaces, that makes the binds and execs libvirtd. A parent that has
// no libvirt directory to bind over (the host has none: it runs no
// libvirt) is replaced in the namespace by a tmpfs that holds a bind of
// each of its entries and the new libvirt directory, so that nothing is
// created on the host.
const libvirtdNamespace = `set -e
d=$1; shift
n=0
place() { # PARENT SRC: SRC becomes PARENT/libvirt
	if [ -d "$1/libvirt" ]; then mount --bind "$2" "$1/libvirt"; return; fi
	n=$((n+1)); t=$d/ns/$n
	mkdir -p "$t"; mount -t tmpfs -o mode=0755 tmpfs "$t"
	for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		if [ -L "$e" ]; then cp -P "$e" "$t/"
		elif [ -d "$e" ]; then mkdir "$t/${e##*/}"; mount --rbind "$e" "$t/${e##*/}"
		else : > "$t/${e##*/}"; mount --bind "$e" "$t/${e##*/}"; fi
	done
	mkdir "$t/libvirt"; mount --bind "$2" "$t/libvirt"; mount --move "$t" "$1"
}
place /etc "$d/etc"
place /run "$d/run"
place /var/lib "$d/lib"
place /var/cache "$d/cache"
place /var/log "$d/log"
mount --bind "$d/passwd" /etc/passwd
mount --bind "$d/group" /etc/group
PATH=$d/bin exec "$@"
`

// libvirtd finds QEMU's emulators on its PATH and probes every one it finds
// when it starts, which takes a minute here with qemu-system-misc's
// sixteen: its PATH is a directory that holds the VM's emulator alone.

// libvirtd's configuration: root connects to its sockets under Env.Dir
// without authentication (there is no polkit without D-Bus); it logs
// errors to a file.
const libvirtdConf = `unix_sock_dir = "%[1]s/sock"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:%[1]s/libvirtd.log"
`

// qemuConf runs QEMU as root without relabelling (no AppArmor or SELinux
// here, and polyvisor's template files must keep their owners), and has
// QEMU write its own log, so that no virtlogd is needed.
const qemuConf = `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
`

// qemuUser is the QEMU user Debian's libvirtd is built with: it looks the
// user up before it reads qemu.conf's "root" and fails without it, so the
// namespace's passwd and group name it (uid 64055, Debian's).
const qemuUser = "libvirt-qemu"

// machineCgroup is where libvirt puts its guests' cgroups.
const machineCgroup = "/machine"

// libvirtd is the virsh peer's private libvirt daemon, a child of this
// process.
type libvirtd struct {
	dir       string
	virshPath string
	cmd       *exec.Cmd
	exited    chan struct{} // closed once cmd has been waited for
	waitErr   error
	// machineMade: libvirt made the machine cgroup, so Close removes it.
	machineMade bool
}

// URI is how virsh reaches the daemon.
func (l *libvirtd) URI() string {
	return "qemu+unix:///system?socket=" + filepath.Join(l.dir, "sock", "libvirt-sock")
}

// startLibvirtd starts a libvirtd whose every file is under dir, which
// knows the emulator (a path) alone, and returns once it answers.
func startLibvirtd(ctx context.Context, dir, emulator string) (_ *libvirtd, err error) {
	for _, sub := range []string{"etc", "run", "lib", "cache", "log", "sock", "ns", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("virsh: %w", err)
		}
	}
	if err := os.Symlink(emulator, filepath.Join(dir, "bin", filepath.Base(emulator))); err != nil {
		return nil, fmt.Errorf("virsh: %w", err)
	}
	if err := writeUserFiles(dir); err != nil {
		return nil, fmt.Errorf("virsh: %w", err)
	}
	conf := filepath.Join(dir, "etc", "libvirtd.conf")
	files := map[string]string{conf: fmt.Sprintf(libvirtdConf, dir), filepath.Join(dir, "etc", "qemu.conf"): qemuConf}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("virsh: %w", err)
		}
	}
	var paths []string
	for _, name := range []string{"unshare", "sh", "libvirtd", "virsh"} {
		path, err := hostreq.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("virsh: %w", err)
		}
		paths = append(paths, path)
	}
	l := &libvirtd{dir: dir, virshPath: paths[3], exited: make(chan struct{})}
	l.machineMade = !slices.Contains(cgroup.Children("/"), strings.TrimPrefix(machineCgroup, "/"))
	log, err := os.Create(filepath.Join(dir, "libvirtd.out"))
	if err != nil {
		return nil, fmt.Errorf("virsh: %w", err)
	}
	defer log.Close()
	l.cmd = exec.Command(paths[0], "--mount", "--net", "--propagation", "private", "--",
		paths[1], "-c", libvirtdNamespace, "sh", dir,
		paths[2], "--config", conf, "--pid-file", filepath.Join(dir, "libvirtd.pid"))
	l.cmd.Stdout, l.cmd.Stderr = log, log
	// Its own session: a signal to the caller's group does not reach it.
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("virsh: start libvirtd: %w", err)
	}
	go func() {
		l.waitErr = l.cmd.Wait()
		close(l.exited)
	}()
	defer func() {
		if err != nil {
			l.stop()
		}
	}()
	sock := filepath.Join(dir, "sock", "libvirt-sock")
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-l.exited:
			return nil, fmt.Errorf("virsh: libvirtd exited (%v): %s", l.waitErr, l.lastError())
		case <-ctx.Done():
			return nil, fmt.Errorf("virsh: libvirtd did not open %s: %w: %s", sock, ctx.Err(), l.lastError())
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The socket listens before the drivers are ready; a call waits for them.
	if _, err := l.virsh(ctx, "uri"); err != nil {
		return nil, fmt.Errorf("virsh: libvirtd does not answer: %w (libvirtd: %s)", err, l.lastError())
	}
	return l, nil
}

// writeUserFiles writes the namespace's passwd and group: the host's, with
// qemuUser added when the host has none.
func writeUserFiles(dir string) error {
	for _, name := range []string{"passwd", "group"} {
		data, err := os.ReadFile("/etc/" + name)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(data, []byte(qemuUser+":")) && !bytes.Contains(data, []byte("\n"+qemuUser+":")) {
			if len(data) > 0 && data[len(data)-1] != '\n' {
				data = append(data, '\n')
			}
			line := qemuUser + ":x:64055:64055::/nonexistent:/usr/sbin/nologin\n"
			if name == "group" {
				line = qemuUser + ":x:64055:\n"
			}
			data = append(data, line...)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// virsh runs one virsh command against the daemon and returns its output;
// its error is the command and virsh's last words.
func (l *libvirtd) virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.virshPath, append([]string{"-q", "-c", l.URI()}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, runcmd.LastLines(stderr.String(), 2))
	}
	return stdout.String(), nil
}

// lastError is the last error line of libvirtd's log, or of its output:
// why it failed, in its own words.
func (l *libvirtd) lastError() string {
	for _, name := range []string{"libvirtd.log", "libvirtd.out"} {
		data, _ := os.ReadFile(filepath.Join(l.dir, name))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if line := strings.TrimSpace(lines[i]); line != "" && (name == "libvirtd.out" || strings.Contains(line, ": error : ")) {
				return line
			}
		}
	}
	return "(libvirtd logged no error)"
}

// stop ends libvirtd: SIGTERM, then SIGKILL after 10 s. The namespaces go
// with their last process; its guests must have been destroyed first.
func (l *libvirtd) stop() error {
	select {
	case <-l.exited:
		return nil
	default:
	}
	l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	l.cmd.Process.Kill()
	<-l.exited
	return fmt.Errorf("virsh: libvirtd %d ignored SIGTERM for 10 s and was killed", l.cmd.Process.Pid)
}

// removeCgroups removes the cgroups libvirt made for domains, and the
// machine cgroup when libvirt made that too.
func (l *libvirtd) removeCgroups(domains []string) error {
	var errs []error
	ours := map[string]bool{}
	for _, d := range domains {
		ours[d] = true
	}
	for _, name := range cgroup.Children(machineCgroup) {
		// libvirt's name: qemu-ID-NAME.libvirt-qemu
		rest, ok := strings.CutSuffix(name, ".libvirt-qemu")
		parts := strings.SplitN(rest, "-", 3)
		if ok && len(parts) == 3 && (l.machineMade || ours[parts[2]]) {
			errs = append(errs, cgroup.Remove(machineCgroup+"/"+name))
		}
	}
	if l.machineMade {
		errs = append(errs, cgroup.Remove(machineCgroup))
	}
	return errors.Join(errs...)
}
