package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) configCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Show or change a guest's definition"}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Print a guest's guest.yaml",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := a.client().Config(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(data)
			return err
		},
	}
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
			result, err := a.client().SetConfig(cmd.Context(), args[0], changes)
			if err != nil {
				return err
			}
			keys := make([]string, 0, len(result.Applied))
			for k := range result.Applied {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				how := "applied live"
				if result.Applied[k] != "live" {
					how = "applies at next start"
				}
				fmt.Fprintf(a.stdout, "%s=%s: %s\n", k, changes[k], how)
			}
			return nil
		},
	}
	cfg.AddCommand(show, set)
	return cfg
}
