// Command polyvisor-monitor starts one container guest with runc and stays
// with it: it owns the guest's console, logs it and serves it to attach
// clients, reaps the guest's init and records its exit. The daemon starts
// one per container guest; guests outlive the daemon because of it. See
// package monitor for the contract.
//
//	polyvisor-monitor --id ID --bundle DIR --runc PATH --runc-root DIR \
//	    --dir RUNDIR --log FILE [--log-max BYTES]
//	polyvisor-monitor --id ID --dir RUNDIR --log FILE [--log-max BYTES] \
//	    [--ready-socket PATH] [--cgroup /PARENT/NAME] [--agent-serial PATH] \
//	    -- COMMAND [ARGS...]
//	polyvisor-monitor --supervise DIR [--linger DURATION]
//
// The second form runs COMMAND (a QEMU process) as the guest, on a console
// pty of the monitor's, instead of a runc container. The third is one
// supervisor for all of a daemon's containers, which the daemon sends
// requests to on DIR/supervisor.sock (see monitor.Request): the container
// class's way, since one Go runtime for all guests costs less than one
// each.
//
// The start's outcome is one line on fd 3, when fd 3 is open: "ok PID" or
// "error MESSAGE". The exit status is 0 once the guest has exited and been
// cleaned up, 1 when it could not be started, 2 for bad arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// readyFd is the descriptor the daemon passes for the ready line.
const readyFd = 3

func main() {
	// One monitor runs per guest and is idle nearly always: one P and a
	// tight heap keep its memory small.
	reexecWithOneP()
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(20)

	ready := readyPipe()
	cfg, sup, err := parseArgs(os.Args[1:])
	if err != nil {
		if ready != nil {
			io.WriteString(ready, "error "+err.Error()+"\n")
		}
		os.Exit(2)
	}
	if sup != nil {
		err = monitor.Supervise(*sup, ready)
	} else {
		err = monitor.Run(context.Background(), cfg, ready)
	}
	if err != nil {
		os.Exit(1)
	}
}

// reexecWithOneP executes the monitor again with GOMAXPROCS=1 in its
// environment, unless it is there already. The runtime sizes its per-P
// structures before main runs, so runtime.GOMAXPROCS(1) in main comes too
// late for most of the saving: measured, starting with one P makes an idle
// monitor about 280 KiB smaller (1.05 MiB of anonymous memory instead of
// 1.33). exec keeps the pid, the process start time and fd 3, so the daemon
// sees no difference. If exec fails, the monitor goes on as it is.
func reexecWithOneP() {
	if os.Getenv("GOMAXPROCS") == "1" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	env := []string{"GOMAXPROCS=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	_ = unix.Exec(exe, os.Args, env)
}

// parseArgs reads the command line written by monitor.Config.Args, or a
// supervisor's: --supervise DIR [--linger DURATION].
func parseArgs(args []string) (monitor.Config, *monitor.SupervisorConfig, error) {
	if len(args) == 0 || args[0] != "--supervise" {
		cfg, err := monitor.ParseArgs(args)
		return cfg, nil, err
	}
	sup := &monitor.SupervisorConfig{}
	fs := flag.NewFlagSet("polyvisor-monitor", flag.ContinueOnError)
	fs.StringVar(&sup.Dir, "supervise", "", "supervise the containers of one daemon; DIR holds the socket, lock and log")
	fs.DurationVar(&sup.Linger, "linger", monitor.DefaultLinger, "with --supervise: how long to wait for a guest once none is left")
	if err := fs.Parse(args); err != nil {
		return monitor.Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return monitor.Config{}, nil, errors.New("unexpected argument " + fs.Arg(0))
	}
	return monitor.Config{}, sup, nil
}

// readyPipe returns fd 3 when the starter passed one, nil otherwise. It is
// marked close-on-exec so that runc and the guest do not inherit it: the
// daemon reading it must see end-of-file when the monitor closes it.
func readyPipe() io.WriteCloser {
	if _, err := unix.FcntlInt(readyFd, unix.F_GETFD, 0); err != nil {
		return nil
	}
	unix.CloseOnExec(readyFd)
	return os.NewFile(readyFd, "ready-pipe")
}
