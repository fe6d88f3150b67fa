package template

import (
	"fmt"
	"os"

	"github.com/polyvisor/polyvisor/internal/guestnet"
)

// inittab returns the /etc/inittab for busybox init as pid 1 of a container whose console is
// a pty that may have nobody attached, with loginShell respawned on that console for
// `polyvisor console`.
//
// There is no sysinit line: runc already mounts /proc, /dev and /sys, the OCI spec is the
// place to ask for a tmpfs on /run, and a mount here would fail without CAP_SYS_ADMIN.
// The shell runs on "console", so busybox init opens /dev/console (runc binds the pty's
// slave there) after setsid and it becomes the shell's controlling tty: job control and
// Ctrl-C work in `polyvisor console`. When the shell exits (exit, or EOF on the pty) init starts another; busybox init
// sleeps a second per loop, so a console nobody reads cannot make it spin.
//
// Stopping: busybox init takes SIGTERM as "reboot" (SIGUSR2 as "poweroff", SIGUSR1 as
// "halt"): it runs the shutdown actions, sends SIGTERM and a second later SIGKILL to every
// process (in a pid namespace, only the container's) and calls reboot(2). In a child pid
// namespace reboot(2) ends the namespace's init (as if by SIGHUP for reboot, SIGINT for
// poweroff). Without CAP_SYS_BOOT, which runc does not grant by default, reboot(2) fails and
// busybox 1.35 exits by itself (status 0) a second later instead of sleeping forever.
// Measured here with busybox 1.35 as pid 1 under `unshare --pid --fork --mount-proc`, a pty
// as console and a respawned shell: gone 2.1 to 3.0 s after SIGTERM, with CAP_SYS_BOOT (init
// killed by SIGHUP) or without it (init exits 0); the same for SIGUSR2. TestBusyboxInitStopsOnSIGTERM checks it.
func inittab(loginShell string) string {
	return "# Written by polyvisor for busybox init in a container.\n" +
		guestnet.InittabLine +
		"console::respawn:-" + loginShell + "\n" +
		"::ctrlaltdel:/bin/true\n" +
		"::shutdown:/bin/true\n"
}

// writeInittab writes inittab(loginShell) to /etc/inittab inside root, with the DHCP
// scripts it starts.
func writeInittab(root *os.Root, loginShell string) error {
	if err := root.WriteFile("etc/inittab", []byte(inittab(loginShell)), 0o644); err != nil {
		return fmt.Errorf("write /etc/inittab: %w", err)
	}
	if err := root.MkdirAll("usr/lib/polyvisor", 0o755); err != nil {
		return fmt.Errorf("write DHCP scripts: %w", err)
	}
	for _, f := range guestNetFiles() {
		if err := root.WriteFile(f.path, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("write /%s: %w", f.path, err)
		}
	}
	return nil
}

// guestNetFiles are the DHCP launcher and udhcpc's script (package guestnet).
func guestNetFiles() []fileSpec {
	return []fileSpec{
		{path: guestnet.LauncherPath, mode: 0o755, content: guestnet.Launcher},
		{path: guestnet.ScriptPath, mode: 0o755, content: guestnet.Script},
	}
}
