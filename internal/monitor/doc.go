// Package monitor is polyvisor-monitor's logic: the process that starts a
// guest, owns its console and outlives the daemon, as conmon does for
// podman and the shim for containerd. It runs in one of two ways: a
// monitor of its own per guest (Run: a VM's QEMU, or one container), or
// one supervisor for all of a daemon's containers (Supervise, see
// Request), which does for each guest what a monitor of its own does,
// as described below, at one Go runtime's cost for all of them.
//
// # Start
//
// The daemon runs `polyvisor-monitor` with Config.Args, in a new session,
// with stdin, stdout and stderr on /dev/null and the write end of a pipe as
// fd 3, and reads one line from the pipe (see ParseReady):
//
//	ok <init pid>
//	error <one-line message, with runc's own error text>
//
// To start, the monitor makes itself a child subreaper, listens on
// RUNDIR/console-recv.sock and runs, through internal/runc (which adds
// --log-format json and a log of its own, read for the error text),
//
//	runc --root RUNROOT run --bundle BUNDLE --detach --console-socket RUNDIR/console-recv.sock --pid-file RUNDIR/init.pid ID
//
// then takes the pty master runc sends and removes console-recv.sock, which
// has served its purpose. When runc exits, the container's
// init, its child, becomes the monitor's. If anything fails the monitor runs
// `runc delete --force ID`, removes what it made and exits 1. It refuses to
// start (ErrExists) when runc already has a container with the id, and then
// deletes nothing.
//
// With a command after -- (a VM's QEMU) the monitor runs it instead, on a
// pty of its own, and reports the start once --ready-socket exists. The
// command starts under umask 0177 (the sockets it makes are 0600) and, with
// --cgroup, inside that cgroup, which the daemon made: the monitor joins it
// for the time of the fork and leaves it again.
//
// With --agent-serial PATH as well, the monitor makes a second pty, in raw
// mode, puts its slave's path (/dev/pts/N) wherever the command's
// arguments say {agent-pty} (UML's ssl1=tty:{agent-pty}, Bochs's com2),
// holds the slave open for the guest's life and relays the master to the
// unix socket PATH (mode 0600), one client at a time, a new one replacing
// the old: the guest agent's serial line, which the daemon dials as it
// dials QEMU's virtio-serial socket.
//
// # Running
//
// Console output goes to the console log (--log), rotated to FILE.1 when it
// would pass --log-max bytes, and to every client attached to
// RUNDIR/console.sock (mode 0600). Clients speak package stream: they send
// Stdin frames (written to the pty) and Resize frames (the pty's window
// size); they receive the output as Stdout frames and, once the guest has
// exited, one Exit frame with its exit code before the monitor hangs up. A
// client that falls behind by more than a few hundred KiB is disconnected;
// the guest and the log never wait for clients.
//
// The monitor ignores SIGHUP, SIGINT and SIGTERM: it forwards nothing and
// keeps running, because the daemon stops a guest by signalling its init
// directly and the monitor must finish by itself once init is gone. SIGKILL
// does kill it; the pty master then closes, so a shell on the console gets
// SIGHUP and the guest usually ends too, and no exit.json is written: the
// daemon's reconcile deals with that.
//
// # End
//
// When init exits, the monitor reaps it (and any other process reparented
// to it), reads the console until the pty is drained, writes
// RUNDIR/exit.json atomically (see ExitStatus), runs
// `runc --root RUNROOT delete --force ID` (which also removes the cgroups),
// disconnects clients, removes both sockets and exits 0. It never touches
// the rootfs or the guest's definition: the daemon does that on reconcile.
//
// The monitor logs its own diagnostics to RUNDIR/monitor.log (a
// supervisor: each guest's there, its own in DIR/supervisor.log). It keeps
// its memory small and its sleep deep: a static binary without package
// net, one P, a low GC percent while attach clients are connected, and
// otherwise its garbage given back and the collector off under a memory
// limit, so that no timer, its own or the runtime's forced collection,
// wakes it while the guests idle (see quiet and collector).
package monitor
