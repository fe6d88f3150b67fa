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
// "halt"): it runs the ::shutdown: actions in order, then sends SIGTERM, sleeps a second,
// sends SIGKILL to every process (in a pid namespace, only the container's), sleeps again
// and calls reboot(2); 2 to 3 s in all. The last ::shutdown: action here (ShutdownEnd) skips
// those sleeps: once the actions before it (the guest's own shutdown work: add yours above
// it) have run, `poweroff -n -f` calls reboot(2) at once. In a child pid namespace reboot(2) ends the
// namespace's init (as if by SIGINT for poweroff, SIGHUP for reboot) and the kernel kills
// every other process in it, so the container is gone a few milliseconds after its last
// action. That takes CAP_SYS_BOOT, which polyvisor's containers hold (capability.Default);
// without it, or in a tree built before this line existed, poweroff fails and init carries
// on with its own 2 to 3 s sequence, then exits by itself (busybox 1.35 exits 0 when
// reboot(2) fails, instead of sleeping forever). -n skips sync(2), which flushes every file
// system of the host (0.6 to 0.9 s per stop here under load); the container driver flushes
// the guest's own tree (syncfs) once its processes have ended. TestBusyboxInitStopsOnSIGTERM
// checks it.
func inittab(loginShell string) string {
	return "# Written by polyvisor for busybox init in a container.\n" +
		guestnet.InittabLine +
		"console::respawn:-" + loginShell + "\n" +
		"::ctrlaltdel:/bin/true\n" +
		"::shutdown:/bin/true\n" +
		ShutdownEnd
}

// ShutdownEnd is the inittab line that ends a busybox container's shutdown: it powers the
// container off as soon as the ::shutdown: actions before it have run.
const ShutdownEnd = "::shutdown:/bin/busybox poweroff -n -f\n"

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
