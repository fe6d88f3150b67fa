package cli

import (
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// daemonBinary is the daemon's own executable (cmd/polyvisord): the CLI
// does not link the daemon, so that no command pays for loading it.
const daemonBinary = "polyvisord"

// daemonCmd runs polyvisord in this process's place (same PID, same
// stdio, same signals, as a service manager expects), passing it every
// argument: the daemon's flags are its own, and so is its --help.
func (a *app) daemonCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "daemon [--state-dir DIR] [--socket PATH] [--listen ADDR:PORT] [--log-level LEVEL] [--default-network NAME]",
		Short:              "Run the polyvisor daemon (guests outlive it)",
		DisableFlagParsing: true,
		Annotations:        map[string]string{skipRemote: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := findDaemon()
			if err != nil {
				return err
			}
			return fmt.Errorf("run %s: %w", path, syscall.Exec(path, append([]string{path}, args...), os.Environ()))
		},
	}
}

// findDaemon locates polyvisord: beside our executable, as make build and
// an install put it, then $PATH.
func findDaemon() (string, error) {
	if path := hostreq.Own(daemonBinary); path != "" {
		return path, nil
	}
	return "", fmt.Errorf("%s not found beside polyvisor or in $PATH: run make build, or install it beside polyvisor", daemonBinary)
}
