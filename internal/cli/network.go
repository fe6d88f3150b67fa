package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func (a *app) networkCmd() *cobra.Command {
	nw := &cobra.Command{Use: "network", Short: "Manage networks: bridges with DHCP, DNS and NAT"}

	var req api.NetworkCreate
	createCmd := &cobra.Command{
		Use:   "create NAME [--subnet CIDR] [--isolated]",
		Short: "Create a network: a bridge, its gateway address and dnsmasq for DHCP and DNS",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			n, err := a.client().CreateNetwork(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Network %s created: %s, gateway %s\n", n.Name, n.Subnet, n.Gateway)
			return nil
		},
	}
	createCmd.Flags().StringVar(&req.Subnet, "subnet", "", "IPv4 subnet, like 10.10.0.0/24 (default: a free /24 of 10.86.0.0/16)")
	createCmd.Flags().BoolVar(&req.Isolated, "isolated", false, "no route out: guests reach the gateway and each other only")

	var listFormat string
	listCmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List networks",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(listFormat, formats...); err != nil {
				return err
			}
			ns, err := a.client().Networks(cmd.Context())
			if err != nil {
				return err
			}
			if listFormat != "table" {
				return printStructured(a.stdout, listFormat, ns)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUBNET\tGATEWAY\tISOLATED\tLEASES\tDNSMASQ")
			for _, n := range ns {
				dnsmasq := fmt.Sprint(n.DNSMasqPID)
				if n.DNSMasqPID == 0 {
					dnsmasq = "restarting"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\n", n.Name, n.Subnet, n.Gateway, n.Isolated, len(n.Leases), dnsmasq)
			}
			return tw.Flush()
		},
	}
	listCmd.Flags().StringVar(&listFormat, "format", "table", "output: table, json or yaml")

	var showFormat string
	showCmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a network and its leases",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(showFormat, "yaml", "json"); err != nil {
				return err
			}
			n, err := a.client().Network(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printStructured(a.stdout, showFormat, n)
		},
	}
	showCmd.Flags().StringVar(&showFormat, "format", "yaml", "output: yaml or json")

	deleteCmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete networks no guest uses",
		Args:  minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := a.client().DeleteNetwork(cmd.Context(), name); err != nil {
					return err
				}
			}
			return nil
		},
	}
	nw.AddCommand(createCmd, listCmd, showCmd, deleteCmd)
	return nw
}
