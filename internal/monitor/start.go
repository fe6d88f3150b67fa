package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/polyvisor/polyvisor/internal/runc"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// consoleTimeout bounds the wait for the console once runc has exited. runc
// sends it before it exits, so it is already queued on the socket.
const consoleTimeout = 5 * time.Second

// guest is a started container as the monitor holds it.
type guest struct {
	pid     int              // the container init's host pid
	console *os.File         // the pty master, pollable
	log     *consoleLog      // where console output is kept
	attach  *stream.Listener // RUNDIR/console.sock
	agent   *agentSerial     // the agent's serial line (Config.AgentSerial), if any
}

// close releases what the monitor holds of the guest; the container itself
// is runc's to delete.
func (g *guest) close() {
	if g.console != nil {
		g.console.Close()
	}
	if g.log != nil {
		g.log.Close()
	}
	if g.attach != nil {
		g.attach.Close()
	}
	if g.agent != nil {
		g.agent.close()
	}
}

// start runs the container and takes its console. It is all or nothing: on
// error the container (if runc made one) is deleted and every file the
// start made in the run directory is removed.
func (m *monitor) start(ctx context.Context) (_ *guest, err error) {
	if m.cfg.runsCommand() {
		return m.startCommand(ctx)
	}
	if err := m.checkNotExists(); err != nil {
		return nil, err
	}
	// An exit file from an earlier run of the guest would read as this
	// run's end.
	if err := os.Remove(m.cfg.path(ExitFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old exit file: %w", err)
	}
	recv, err := runc.ListenConsole(m.cfg.path(ConsoleRecvSocketName))
	if err != nil {
		return nil, err
	}
	// The receiving socket serves its one connection during the start only.
	defer recv.Close()

	g := &guest{}
	defer func() {
		if err == nil {
			return
		}
		g.close()
		// runc usually cleans up a failed run itself, and then this delete
		// fails with "does not exist"; only a container left is worth a word.
		if delErr := m.runcDelete(); delErr != nil && m.checkNotExists() != nil {
			m.log.Error("container left after a failed start", "err", delErr)
		}
		os.Remove(m.cfg.path(InitPidName))
	}()

	if err = m.runcRun(ctx, recv.Path()); err != nil {
		return nil, err
	}
	recvCtx, cancel := context.WithTimeout(ctx, consoleTimeout)
	defer cancel()
	if g.console, err = recv.Receive(recvCtx); err != nil {
		return nil, err
	}
	if g.pid, err = readPidFile(m.cfg.path(InitPidName)); err != nil {
		return nil, err
	}
	if g.log, err = openConsoleLog(m.cfg.Log, m.cfg.LogMax); err != nil {
		return nil, err
	}
	if g.attach, err = stream.Listen(m.cfg.path(ConsoleSocketName)); err != nil {
		return nil, err
	}
	return g, nil
}
