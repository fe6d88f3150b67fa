// Package daemoncmd is polyvisord's command line: the daemon's flags, the
// drivers it registers, and its start. It is a binary apart from the CLI
// so that every CLI command does not load (and start up) the daemon, the
// drivers and everything they link.
package daemoncmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/daemon"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/bochs"
	"github.com/polyvisor/polyvisor/internal/driver/container"
	"github.com/polyvisor/polyvisor/internal/driver/qemu"
	"github.com/polyvisor/polyvisor/internal/driver/uml"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
	"github.com/polyvisor/polyvisor/internal/vendorhost/libvirt"
	"github.com/polyvisor/polyvisor/internal/vendorhost/vsphere"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Main runs polyvisord and returns the process exit code.
func Main(ctx context.Context, args []string) int {
	cmd := NewCommand()
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", err)
		return 1
	}
	return 0
}

// registerDrivers is where every guest class is plugged in: a new class is
// a new package under internal/driver and one line here. The first driver
// registered for a type is that type's default engine.
func registerDrivers(l layout.Layout, opts daemonOptions, log *slog.Logger, fault func(string) error) (*driver.Registry, error) {
	monitor, err := findMonitor(opts.monitor)
	if err != nil {
		return nil, err
	}
	reg := driver.NewRegistry()
	reg.Register(container.New(container.Options{Layout: l, Runtime: opts.runtime, Monitor: monitor, Log: log, Fault: fault}))
	reg.Register(qemu.New(qemu.Options{Layout: l, Monitor: monitor, Log: log, Unconfined: opts.unconfinedVMs, Fault: fault}))
	reg.Register(uml.New(uml.Options{Layout: l, Monitor: monitor, Log: log}))
	reg.Register(bochs.New(bochs.Options{Layout: l, Monitor: monitor, Log: log}))
	return reg, nil
}

// hostKinds is where every kind of vendor host is plugged in: a new kind
// is a new package under internal/vendorhost and one line here.
func hostKinds() map[string]vendorhost.Opener {
	return map[string]vendorhost.Opener{
		vendorhost.KindVSphere: vsphere.Open,
		vendorhost.KindLibvirt: libvirt.Open,
	}
}

type daemonOptions struct {
	stateDir, runtime, monitor, logLevel string
	defaultNetwork                       string
	listen                               string
	forceNewCluster                      bool
	faults                               []string
	unconfinedVMs                        bool
}

// NewCommand returns polyvisord's command: the daemon, with its flags.
func NewCommand() *cobra.Command {
	var opts daemonOptions
	var socket string
	cmd := &cobra.Command{
		Use:           "polyvisord",
		Short:         "Run the polyvisor daemon (guests outlive it); polyvisor daemon runs this",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("polyvisor daemon takes no arguments (got %q); see --help", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", opts.logLevel)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			fault := faultInjector(opts.faults)
			l := layout.New(opts.stateDir)
			reg, err := registerDrivers(l, opts, log, fault)
			if err != nil {
				return err
			}
			monitor, err := findMonitor(opts.monitor)
			if err != nil {
				return err
			}
			listen := opts.listen
			if listen != "" {
				if listen, err = daemon.ListenAddress(listen); err != nil {
					return err
				}
			}
			d, err := daemon.New(daemon.Config{
				StateDir: opts.stateDir, Socket: socket, Drivers: reg, Log: log, Fault: fault,
				DefaultNetwork: opts.defaultNetwork, Listen: listen, HostKinds: hostKinds(),
				ForceNewCluster: opts.forceNewCluster,
				// make build puts the guest agents beside the monitor.
				AgentDir: filepath.Dir(monitor),
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), unix.SIGTERM, unix.SIGINT)
			defer stop()
			return d.Run(ctx)
		},
	}
	f := cmd.Flags()
	defaultSocket := layout.DefaultSocket
	if env := os.Getenv("POLYVISOR_SOCKET"); env != "" {
		defaultSocket = env
	}
	f.StringVar(&socket, "socket", defaultSocket, "API socket to serve (env POLYVISOR_SOCKET)")
	f.BoolVar(&opts.forceNewCluster, "force-new-cluster", false, "recover a cluster that lost its quorum: this member's etcd starts as the only member, keeping its data (etcd's --force-new-cluster; see docs/cluster.md); once only")
	f.StringVar(&opts.listen, "listen", "", "also serve the API over HTTPS here (ADDR[:PORT], port "+api.DefaultPort+" if none), to clients trusted with 'polyvisor trust add'")
	f.StringVar(&opts.stateDir, "state-dir", layout.DefaultStateDir, "where definitions, disks and templates live")
	f.StringVar(&opts.runtime, "runtime", "runc", "OCI runtime for containers (runc, or crun where the host allows)")
	f.StringVar(&opts.monitor, "monitor", "", "path of polyvisor-monitor (default: beside this binary, then $PATH)")
	f.StringVar(&opts.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&opts.defaultNetwork, "default-network", network.DefaultName, "network a guest joins when it names none (made on first use if it is "+network.DefaultName+"), or none")
	f.StringSliceVar(&opts.faults, "inject-fault", nil, "fail at these named points (testing only)")
	f.MarkHidden("inject-fault")
	f.BoolVar(&opts.unconfinedVMs, "unconfined-vms", false, "run QEMU as root, unsandboxed, outside any cgroup (benchmarks' baseline only)")
	f.MarkHidden("unconfined-vms")
	return cmd
}

// findMonitor locates polyvisor-monitor: the flag, beside our executable,
// then $PATH.
func findMonitor(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if path := hostreq.Own("polyvisor-monitor"); path != "" {
		return path, nil
	}
	return "", fmt.Errorf("polyvisor-monitor not found beside polyvisor or in $PATH: run make build, or pass --monitor")
}

// faultInjector fails at the named points, so tests can check that an
// interrupted operation leaves nothing behind; "crash:POINT" kills the
// daemon there instead (SIGKILL, as a crash would), so tests can check
// what the next daemon makes of it.
func faultInjector(points []string) func(string) error {
	if len(points) == 0 {
		return nil
	}
	return func(point string) error {
		for _, p := range points {
			switch strings.TrimSpace(p) {
			case point:
				return fmt.Errorf("injected fault at %s", point)
			case "crash:" + point:
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal ends us
			}
		}
		return nil
	}
}
