package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func (a *app) configCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Show or change a guest's definition"}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Print a guest's guest.yaml",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			data, err := c.Config(cmd.Context(), name)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(data)
			return err
		},
	}
	var force bool
	set := &cobra.Command{
		Use:   "set NAME KEY=VALUE...",
		Short: "Change cpus, memory or processes; applied live where cgroups allow, else at next start",
		Args:  minArgs(2, "NAME KEY=VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			changes := map[string]string{}
			for _, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("%q: write settings as KEY=VALUE, like memory=256MiB", kv)
				}
				changes[k] = v
			}
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			result, err := c.SetConfig(cmd.Context(), name, api.ConfigChange{Set: changes, Force: force})
			if err != nil {
				return err
			}
			a.printApplied(result, changes)
			return nil
		},
	}
	set.Flags().BoolVar(&force, "force", false, "accept memory beyond the host's (overcommit)")
	edit := &cobra.Command{
		Use:   "edit NAME",
		Short: "Edit a guest's guest.yaml in $EDITOR; only cpus, memory and processes may change",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			data, err := c.Config(cmd.Context(), name)
			if err != nil {
				return err
			}
			edited, err := editInEditor(data)
			if err != nil {
				return err
			}
			if bytes.Equal(edited, data) {
				fmt.Fprintln(a.stdout, "no changes")
				return nil
			}
			result, err := c.ReplaceConfig(cmd.Context(), name, edited)
			if err != nil {
				return err
			}
			a.printApplied(result, nil)
			return nil
		},
	}
	cfg.AddCommand(show, set, edit)
	return cfg
}

// printApplied says, per key, whether it took effect now or at next start.
func (a *app) printApplied(result api.ConfigResult, values map[string]string) {
	keys := make([]string, 0, len(result.Applied))
	for k := range result.Applied {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		how := "applies at next start"
		switch result.Applied[k] {
		case "live":
			how = "applied live"
		case "unchanged":
			how = "unchanged"
		}
		if v, ok := values[k]; ok {
			fmt.Fprintf(a.stdout, "%s=%s: %s\n", k, v, how)
		} else {
			fmt.Fprintf(a.stdout, "%s: %s\n", k, how)
		}
	}
}

// editInEditor opens data in $VISUAL, $EDITOR or vi and returns the result.
func editInEditor(data []byte) ([]byte, error) {
	f, err := os.CreateTemp("", "polyvisor-edit-*.yaml")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	// The editor may carry arguments ("code --wait"): let the shell split it.
	cmd := exec.Command("sh", "-c", editor+` "$1"`, "editor", f.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("editor %s: %w", editor, err)
	}
	return os.ReadFile(f.Name())
}
