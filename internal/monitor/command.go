package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// StderrName keeps a command guest's own error output (QEMU's complaints).
const StderrName = "stderr.log"

// readyTimeout bounds how long a command guest may take to show its ready
// socket (QEMU creates its QMP socket before it runs the guest).
const readyTimeout = 30 * time.Second

// startCommand runs cfg.Command as the guest process, on a pty the monitor
// creates: the pty is the guest's console, as runc's is for a container
// (QEMU is given `-serial stdio`-style console options). The process is the
// monitor's own child. The start counts as done when cfg.ReadySocket exists;
// if the process exits first, the last lines of its error output become the
// start's error.
func (m *monitor) startCommand(ctx context.Context) (_ *guest, err error) {
	if err := os.Remove(m.cfg.path(ExitFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old exit file: %w", err)
	}
	master, slave, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open console pty: %w", err)
	}
	g := &guest{console: master}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	stderr, err := os.Create(m.cfg.path(StderrName))
	if err != nil {
		slave.Close()
		return nil, fmt.Errorf("create %s: %w", StderrName, err)
	}
	defer stderr.Close()
	argv := m.cfg.Command
	if m.cfg.AgentSerial != "" {
		if g.agent, err = openAgentSerial(m.cfg.AgentSerial, m.log); err != nil {
			slave.Close()
			return nil, err
		}
		argv = substituteAgentPty(argv, g.agent.slavePath())
		g.agent.serve()
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, stderr
	cmd.Dir = m.cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = m.startIn(cmd)
	slave.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", m.cfg.Command[0], err)
	}
	// The monitor reaps its children itself (wait4), never through cmd.Wait.
	g.pid = cmd.Process.Pid
	cmd.Process.Release()
	if err = m.waitReady(ctx, g.pid); err != nil {
		unix.Kill(g.pid, unix.SIGKILL)
		m.reap(g.pid)
		return nil, err
	}
	if g.log, err = openConsoleLog(m.cfg.Log, m.cfg.LogMax); err != nil {
		unix.Kill(g.pid, unix.SIGKILL)
		return nil, err
	}
	if g.attach, err = stream.Listen(m.cfg.path(ConsoleSocketName)); err != nil {
		unix.Kill(g.pid, unix.SIGKILL)
		return nil, err
	}
	return g, nil
}

// startIn starts cmd in cfg.Cgroup, when there is one: the monitor joins
// it for the time of the fork, so the child is born there, then leaves.
// The child's umask keeps the sockets it makes (QEMU's QMP and agent
// sockets) to their owner, root, whatever user it later becomes.
func (m *monitor) startIn(cmd *exec.Cmd) error {
	old := unix.Umask(0o177) // sockets are made 0777 less the umask: 0600
	defer unix.Umask(old)
	if m.cfg.Cgroup == "" {
		return cmd.Start()
	}
	leave, err := cgroup.Join(m.cfg.Cgroup)
	if err != nil {
		return err
	}
	err = cmd.Start()
	if lerr := leave(); lerr != nil {
		// The monitor stays in the guest's cgroup: a little of its memory
		// counts against the guest's, and the cgroup goes once it exits.
		m.log.Warn("the monitor stays in its guest's cgroup", "err", lerr)
	}
	return err
}

// waitReady waits for the ready socket to appear, failing with the
// command's last error lines if it exits first.
func (m *monitor) waitReady(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m.cfg.ReadySocket == "" {
			return nil
		}
		if _, err := os.Stat(m.cfg.ReadySocket); err == nil {
			return nil
		}
		if ws, exited, _ := m.reap(pid); exited {
			return fmt.Errorf("%s exited at start (%s): %s", m.cfg.Command[0], describeWait(ws), lastLines(m.cfg.path(StderrName), 3))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not create %s within %s", m.cfg.Command[0], m.cfg.ReadySocket, readyTimeout)
		case <-tick.C:
		}
	}
}

func describeWait(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// lastLines returns up to n last non-empty lines of a file, on one line.
func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if lines := runcmd.LastLines(string(data), n); err == nil && lines != "" {
		return lines
	}
	return "(no error output)"
}
