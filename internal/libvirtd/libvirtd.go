// Package libvirtd runs a private libvirtd, for bench's libvirt peer and
// the tests of polyvisor's libvirt hosts.
//
// A root libvirtd ignores every path setting of its drivers: its state,
// definitions, logs and cache are always /run/libvirt, /etc/libvirt,
// /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt
// (qemu:///session is for unprivileged users only). This one therefore
// runs in a mount namespace of its own in which those five directories are
// directories of its Dir, and in a network namespace of its own, so that
// its network and nwfilter drivers cannot touch the host's links or
// firewall even by accident. The host sees none of it.
package libvirtd

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
)

// namespaceScript, run by unshare in the new namespaces, makes the binds
// and execs libvirtd. A parent that has no libvirt directory to bind over
// (the host has none: it runs no libvirt) is replaced in the namespace by
// a tmpfs that holds a bind of each of its entries and the new libvirt
// directory, so that nothing is created on the host.
//
// With HIDE_UNIFIED set it also unmounts a hybrid host's empty cgroup2 at
// /sys/fs/cgroup/unified, in the namespace only: libvirt 9.0's LXC driver
// binds it in a container before it mounts the v1 tmpfs under it, and
// fails ("Unable to create directory /sys/fs/cgroup/unified").
const namespaceScript = `set -e
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
if [ -n "$HIDE_UNIFIED" ]; then umount /sys/fs/cgroup/unified 2>/dev/null || :; fi
PATH=$d/bin exec "$@"
`

// daemonConf: root connects to the sockets under Dir without
// authentication (there is no polkit without D-Bus); errors are logged to
// a file.
const daemonConf = `unix_sock_dir = "%[1]s/sock"
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

// lxcConf: no AppArmor or SELinux here.
const lxcConf = `security_driver = "none"
`

// qemuUser is the QEMU user Debian's libvirtd is built with: it looks the
// user up before it reads qemu.conf's "root" and fails without it, so the
// namespace's passwd and group name it (uid 64055, Debian's).
const qemuUser = "libvirt-qemu"

// MachineCgroup is where libvirt puts its guests' cgroups.
const MachineCgroup = "/machine"

// Options say what the daemon may run.
type Options struct {
	// Dir holds every file of the daemon's; short, as its socket's path
	// must fit a unix socket's.
	Dir string
	// Programs are the only ones on the daemon's PATH, by name (found
	// through hostreq) or path: libvirtd probes every QEMU emulator it
	// finds when it starts, which takes a minute with qemu-system-misc's
	// sixteen. qemu-img snapshots a stopped domain's disks.
	Programs []string
	// LXC readies the namespace for libvirt's LXC driver.
	LXC bool
}

// Daemon is a private libvirtd, a child of this process.
type Daemon struct {
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	waitErr error
	// machineMade: libvirt made the machine cgroup, so RemoveCgroups
	// removes it.
	machineMade bool
}

// Socket is the daemon's read-write socket.
func (d *Daemon) Socket() string { return filepath.Join(d.dir, "sock", "libvirt-sock") }

// URI is the daemon's QEMU driver's URI.
func (d *Daemon) URI() string { return "qemu+unix:///system?socket=" + d.Socket() }

// Dir is where the daemon's files are.
func (d *Daemon) Dir() string { return d.dir }

// PID is libvirtd's pid (unshare execs sh, which execs it).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Exited is closed once libvirtd has ended and been reaped; Err then says
// how it ended.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Err is how libvirtd ended, once Exited is closed.
func (d *Daemon) Err() error { return d.waitErr }

// Start starts a libvirtd whose every file is under opts.Dir and returns
// once its socket is there; a call waits for its drivers.
func Start(ctx context.Context, opts Options) (_ *Daemon, err error) {
	dir := opts.Dir
	for _, sub := range []string{"etc", "run", "lib", "cache", "log", "sock", "ns", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("libvirtd: %w", err)
		}
	}
	for _, program := range opts.Programs {
		path := program
		if !filepath.IsAbs(path) {
			if path, err = hostreq.Lookup(program); err != nil {
				return nil, fmt.Errorf("libvirtd: %w", err)
			}
		}
		if err := os.Symlink(path, filepath.Join(dir, "bin", filepath.Base(path))); err != nil {
			return nil, fmt.Errorf("libvirtd: %w", err)
		}
	}
	if err := writeUserFiles(dir); err != nil {
		return nil, fmt.Errorf("libvirtd: %w", err)
	}
	conf := filepath.Join(dir, "etc", "libvirtd.conf")
	files := map[string]string{conf: fmt.Sprintf(daemonConf, dir), filepath.Join(dir, "etc", "qemu.conf"): qemuConf}
	if opts.LXC {
		files[filepath.Join(dir, "etc", "lxc.conf")] = lxcConf
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("libvirtd: %w", err)
		}
	}
	var paths []string
	for _, name := range []string{"unshare", "sh", "libvirtd"} {
		path, err := hostreq.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("libvirtd: %w", err)
		}
		paths = append(paths, path)
	}
	d := &Daemon{dir: dir, exited: make(chan struct{})}
	d.machineMade = !slices.Contains(cgroup.Children("/"), strings.TrimPrefix(MachineCgroup, "/"))
	log, err := os.Create(filepath.Join(dir, "libvirtd.out"))
	if err != nil {
		return nil, fmt.Errorf("libvirtd: %w", err)
	}
	defer log.Close()
	d.cmd = exec.Command(paths[0], "--mount", "--net", "--propagation", "private", "--",
		paths[1], "-c", namespaceScript, "sh", dir,
		paths[2], "--config", conf, "--pid-file", filepath.Join(dir, "libvirtd.pid"))
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if opts.LXC {
		d.cmd.Env = append(os.Environ(), "HIDE_UNIFIED=1")
	}
	// Its own session: a signal to the caller's group does not reach it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("libvirtd: start: %w", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	for {
		if _, err := os.Stat(d.Socket()); err == nil {
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("libvirtd exited (%v): %s", d.waitErr, d.LastError())
		case <-ctx.Done():
			return nil, fmt.Errorf("libvirtd did not open %s: %w: %s", d.Socket(), ctx.Err(), d.LastError())
		case <-time.After(10 * time.Millisecond):
		}
	}
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

// LastError is the last error line of libvirtd's log, or of its output:
// why it failed, in its own words.
func (d *Daemon) LastError() string {
	for _, name := range []string{"libvirtd.log", "libvirtd.out"} {
		data, _ := os.ReadFile(filepath.Join(d.dir, name))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if line := strings.TrimSpace(lines[i]); line != "" && (name == "libvirtd.out" || strings.Contains(line, ": error : ")) {
				return line
			}
		}
	}
	return "(libvirtd logged no error)"
}

// Namespaces are the links of libvirtd's mount and network namespaces
// (/proc/PID/ns/mnt, .../net), while it runs.
func (d *Daemon) Namespaces() []string {
	var nss []string
	for _, ns := range []string{"mnt", "net"} {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", d.PID(), ns)); err == nil {
			nss = append(nss, link)
		}
	}
	return nss
}

// Processes are the processes in namespaces nss or naming the daemon's
// directory, each "PID CMDLINE": libvirtd, its QEMUs, libvirt_lxc and the
// containers' inits.
func (d *Daemon) Processes(nss []string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || e.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		in := bytes.Contains(cmdline, []byte(d.dir))
		for _, ns := range []string{"mnt", "net"} {
			link, _ := os.Readlink("/proc/" + e.Name() + "/ns/" + ns)
			in = in || slices.Contains(nss, link)
		}
		if in {
			found = append(found, e.Name()+" "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// KillGuests kills, by pid, every process of the daemon's namespaces but
// libvirtd: QEMU and libvirt_lxc run in its mount namespace and outlive it
// otherwise.
func (d *Daemon) KillGuests() {
	for _, p := range d.Processes(d.Namespaces()) {
		var pid int
		fmt.Sscan(p, &pid)
		if pid > 0 && pid != d.PID() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Stop ends libvirtd: SIGTERM, then SIGKILL after 10 s. The namespaces go
// with their last process; its guests must have been ended first.
func (d *Daemon) Stop() error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	d.cmd.Process.Kill()
	<-d.exited
	return fmt.Errorf("libvirtd %d ignored SIGTERM for 10 s and was killed", d.PID())
}

// RemoveCgroups removes the cgroups libvirt made for the domains ours
// says are this daemon's (ours gets the domain's name, from libvirt's
// cgroup name DRIVER-ID-NAME.libvirt-DRIVER), and the machine cgroup when
// libvirt made it for this daemon and nothing else is left in it: another
// private libvirtd's guests may be there.
func (d *Daemon) RemoveCgroups(ours func(domain string) bool) error {
	var errs []error
	for _, name := range cgroup.Children(MachineCgroup) {
		rest, ok := strings.CutSuffix(name, ".libvirt-qemu")
		if !ok {
			rest, ok = strings.CutSuffix(name, ".libvirt-lxc")
		}
		parts := strings.SplitN(rest, "-", 3)
		if ok && len(parts) == 3 && ours(parts[2]) {
			errs = append(errs, cgroup.Remove(MachineCgroup+"/"+name))
		}
	}
	if d.machineMade && len(cgroup.Children(MachineCgroup)) == 0 {
		errs = append(errs, cgroup.Remove(MachineCgroup))
	}
	return errors.Join(errs...)
}

// lockPath is the lock of the host's private libvirtds (see Exclusive).
const lockPath = "/run/polyvisor-private-libvirtd.lock"

// Exclusive waits until no other process holds the host's private
// libvirtd lock, takes it, and returns what gives it back. Private
// libvirtds share libvirt's machine cgroup and look alike in the process
// table, so a test that compares the host before and after its libvirtd
// holds it from before it reads the host until after it checked it: two
// such tests (in packages go test runs at once) would see each other's.
func Exclusive(ctx context.Context) (release func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("libvirtd lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("libvirtd lock %s: %w", lockPath, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("libvirtd lock %s: another private libvirtd held it: %w", lockPath, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
