package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) hostCmd() *cobra.Command {
	host := &cobra.Command{Use: "host", Short: "What this host can run"}
	var format string
	check := &cobra.Command{
		Use:   "check",
		Short: "Canary-test each guest class and say why one does not work",
		Args:  exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			check, err := a.client().HostCheck(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printStructured(a.stdout, "json", check)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLASS\tWORKS\tTOOK\tWHY")
			for _, v := range check.Classes {
				works := "no"
				if v.Works {
					works = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Class, works, v.Duration, v.Reason)
			}
			return tw.Flush()
		},
	}
	check.Flags().StringVar(&format, "format", "table", "output: table or json")
	host.AddCommand(check)
	return host
}
