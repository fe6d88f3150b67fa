// Command escape runs inside a container guest and tries, as the guest's
// root, what a hostile guest would to reach the kernel's wider surface or
// the host. It prints one line per attempt: "NAME denied ERRNO" or
// "NAME ALLOWED". The e2e escape test pipes it into a guest and reads them.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	attempts := []struct {
		name string
		try  func() error
	}{
		{"add_key", func() error {
			_, err := unix.AddKey("user", "pv-escape", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
			return err
		}},
		{"keyctl", func() error {
			_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 1, 0, 0)
			return err
		}},
		{"io_uring_setup", func() error {
			var params [120]byte
			fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
			if errno != 0 {
				return errno
			}
			unix.Close(int(fd))
			return nil
		}},
		// A new user namespace is asked for by a child's clone: unshare
		// of one fails with EINVAL in any multithreaded process, a Go
		// program included, whatever the confinement.
		{"unshare_user", func() error {
			child := exec.Command("/bin/true")
			child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
			return child.Run()
		}},
		{"unshare_mount", func() error { return unix.Unshare(unix.CLONE_NEWNS) }},
		{"mount_proc", func() error {
			os.MkdirAll("/tmp/pv-escape-proc", 0o755)
			return unix.Mount("proc", "/tmp/pv-escape-proc", "proc", 0, "")
		}},
		{"mount_sysfs", func() error {
			os.MkdirAll("/tmp/pv-escape-sys", 0o755)
			return unix.Mount("sysfs", "/tmp/pv-escape-sys", "sysfs", 0, "")
		}},
		{"mount_cgroup", func() error {
			os.MkdirAll("/tmp/pv-escape-cg", 0o755)
			return unix.Mount("cgroup", "/tmp/pv-escape-cg", "cgroup", 0, "memory")
		}},
		{"umount_masked_kcore", func() error { return unix.Unmount("/proc/kcore", unix.MNT_DETACH) }},
		{"remount_proc_sys_rw", func() error {
			return unix.Mount("", "/proc/sys", "", unix.MS_REMOUNT|unix.MS_BIND, "")
		}},
		{"finit_module", func() error { return unix.FinitModule(0, "", 0) }},
		{"sysrq_trigger", func() error {
			f, err := os.OpenFile("/proc/sysrq-trigger", os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"mknod_block_device", func() error {
			return unix.Mknod("/tmp/pv-escape-sda", unix.S_IFBLK|0o600, int(unix.Mkdev(8, 0)))
		}},
		{"bpf", func() error {
			_, _, errno := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
			if errno != 0 {
				return errno
			}
			return nil
		}},
		{"kexec_load", func() error {
			_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0)
			if errno != 0 {
				return errno
			}
			return nil
		}},
		{"see_host_processes", func() error {
			// A pid namespace of its own: no process of the host's (the
			// polyvisor daemon, say) is there to signal or trace.
			comms, _ := filepath.Glob("/proc/[0-9]*/comm")
			for _, c := range comms {
				if name, _ := os.ReadFile(c); strings.HasPrefix(string(name), "polyvisor") {
					return nil
				}
			}
			return errors.New("not visible")
		}},
		{"setns_host_net", func() error {
			f, err := os.Open("/proc/1/ns/net") // the guest's own: setns needs CAP_SYS_ADMIN
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		}},
	}
	for _, a := range attempts {
		err := a.try()
		var errno unix.Errno
		switch {
		case err == nil:
			fmt.Printf("%s ALLOWED\n", a.name)
		case errors.As(err, &errno):
			fmt.Printf("%s denied %s\n", a.name, unix.ErrnoName(errno))
		default:
			fmt.Printf("%s denied %v\n", a.name, err)
		}
	}
}
