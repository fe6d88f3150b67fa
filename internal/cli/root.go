// Package cli is the polyvisor command line: one cobra command per verb of
// the contract in DESIGN.md, each a thin layer over pkg/client.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/remotes"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// ExitError carries an exit code to main without printing anything: the
// exit code of a command run by `exec`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// app holds what every command shares.
type app struct {
	socket string
	// remote is --remote: the daemon commands go to, instead of the
	// default remote (see remote switch).
	remote string
	stdout io.Writer
	stderr io.Writer
	// base is the client of that daemon, which resolve sets before a
	// command runs; conf is the user's remotes, loaded on first need.
	base *client.Client
	conf *remotes.Config
}

// client is the client of the daemon a command goes to when no guest
// argument names a remote.
func (a *app) client() *client.Client {
	if a.base == nil {
		return client.New(a.socket)
	}
	return a.base
}

// NewRoot returns the polyvisor root command.
func NewRoot() *cobra.Command {
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	root := &cobra.Command{
		Use:   "polyvisor",
		Short: "One manager for every class of virtualization on a Linux server",
		Long: `One manager for every class of virtualization on a Linux server.

Commands go to the daemon on this host's socket, or to another polyvisor
daemon added with 'remote add': wherever a command names a guest,
REMOTE:NAME names one there, and --remote sends any command there.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defaultSocket := layout.DefaultSocket
	if env := os.Getenv("POLYVISOR_SOCKET"); env != "" {
		defaultSocket = env
	}
	root.PersistentFlags().StringVar(&a.socket, "socket", defaultSocket, "daemon API socket (env POLYVISOR_SOCKET)")
	root.PersistentFlags().StringVar(&a.remote, "remote", "", "send the command to this remote (see remote list) instead of the default one")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error { return a.resolve(cmd) }
	root.AddCommand(
		a.daemonCmd(),
		a.hostCmd(),
		a.templateCmd(),
		a.networkCmd(),
		a.launchCmd("launch", true),
		a.launchCmd("create", false),
		a.listCmd(),
		a.infoCmd(),
		a.stateCmd("start", "Start a stopped guest"),
		a.stateCmd("stop", "Stop a running guest (SIGTERM to its init, SIGKILL after --timeout)"),
		a.stateCmd("restart", "Stop then start a guest"),
		a.deleteCmd(),
		a.execCmd(),
		a.consoleCmd(),
		a.configCmd(),
		a.snapshotCmd(),
		a.copyCmd(),
		a.importCmd(),
		a.exportCmd(),
		a.moveCmd(),
		a.benchCmd(),
		a.adviseCmd(),
		a.monitorCmd(),
		a.serverCmd(),
		a.trustCmd(),
		a.remoteCmd(),
		a.clusterCmd(),
	)
	return root
}

// Main runs the CLI and returns the process exit code.
func Main(ctx context.Context, args []string) int {
	root := NewRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	fmt.Fprintf(os.Stderr, "Error: %s\n", err)
	return 1
}
