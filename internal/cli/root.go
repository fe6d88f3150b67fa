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
	"github.com/polyvisor/polyvisor/pkg/client"
)

// ExitError carries an exit code to main without printing anything: the
// exit code of a command run by `exec`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// app holds what every command shares.
type app struct {
	socket string
	stdout io.Writer
	stderr io.Writer
}

func (a *app) client() *client.Client { return client.New(a.socket) }

// NewRoot returns the polyvisor root command.
func NewRoot() *cobra.Command {
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	root := &cobra.Command{
		Use:           "polyvisor",
		Short:         "One manager for every class of virtualization on a Linux server",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defaultSocket := layout.DefaultSocket
	if env := os.Getenv("POLYVISOR_SOCKET"); env != "" {
		defaultSocket = env
	}
	root.PersistentFlags().StringVar(&a.socket, "socket", defaultSocket, "daemon API socket (env POLYVISOR_SOCKET)")
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
		a.benchCmd(),
		a.adviseCmd(),
		a.monitorCmd(),
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
