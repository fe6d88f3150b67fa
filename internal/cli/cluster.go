package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// The cluster (docs/cluster.md): init, add, join, list, remove.
func (a *app) clusterCmd() *cobra.Command {
	cluster := &cobra.Command{Use: "cluster", Short: "Many hosts as one: members on embedded etcd, guests placed, failed over and moved among them"}

	var initReq api.ClusterInit
	var initOffline, initReplicate time.Duration
	initCmd := &cobra.Command{
		Use:   "init [--name CLUSTER] [--member NAME] [--address IP]",
		Short: "Found a cluster of this daemon alone (it must serve HTTPS: daemon --listen)",
		Args:  exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("offline-after") {
				initReq.OfflineAfter = initOffline.String()
			}
			if cmd.Flags().Changed("replicate-every") {
				initReq.ReplicateEvery = initReplicate.String()
			}
			c, err := a.client().ClusterInit(cmd.Context(), initReq)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Cluster %s founded with member %s. Add a member: polyvisor cluster add NAME, then on it: polyvisor cluster join TOKEN\n", c.Name, c.Member)
			return nil
		},
	}
	f := initCmd.Flags()
	f.StringVar(&initReq.Name, "name", "", "the cluster's name (default polyvisor)")
	f.StringVar(&initReq.Member, "member", "", "this member's name (default: the host name)")
	f.StringVar(&initReq.Address, "address", "", "the address the members reach this one at (default: the --listen address, or the host's first)")
	f.DurationVar(&initOffline, "offline-after", 15*time.Second, "how long a member may stay silent before it is offline and its HA guests run elsewhere")
	f.DurationVar(&initReplicate, "replicate-every", time.Minute, "how often HA guests' disks are copied to their replica member: the most data a failover loses")

	var expiry time.Duration
	add := &cobra.Command{
		Use:   "add NAME [--expiry DURATION]",
		Short: "Print a one-time token with which a daemon joins this cluster as member NAME (polyvisor cluster join TOKEN)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			issued, err := a.client().ClusterToken(cmd.Context(), api.ClusterTokenCreate{Name: args[0], ExpiresIn: expiry.String()})
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, issued.Token)
			fmt.Fprintf(a.stderr, "Join token for member %s: it works once, until %s. On that host: polyvisor cluster join TOKEN\n",
				issued.Name, issued.ExpiresAt.Local().Format(time.DateTime))
			return nil
		},
	}
	add.Flags().DurationVar(&expiry, "expiry", time.Hour, "how long the token works")

	var joinAddress string
	join := &cobra.Command{
		Use:   "join TOKEN [--address IP]",
		Short: "Join this daemon to the cluster a token of 'cluster add' leads to",
		Args:  exactArgs(1, "TOKEN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client().ClusterJoin(cmd.Context(), api.ClusterJoin{Token: args[0], Address: joinAddress})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Joined cluster %s as member %s (%d members).\n", c.Name, c.Member, len(c.Members))
			return nil
		},
	}
	join.Flags().StringVar(&joinAddress, "address", "", "the address the members reach this one at (default: the one this host reaches the token's member from)")

	var format string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the members: addresses, roles, health, free CPU and memory, guests, class verdicts",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, formats...); err != nil {
				return err
			}
			c, err := a.client().Cluster(cmd.Context())
			if err != nil {
				return err
			}
			if format != "table" {
				return printStructured(a.stdout, format, c)
			}
			if !c.Writable {
				fmt.Fprintf(a.stderr, "warning: %s\n", c.Reason)
			}
			header := []string{"NAME", "ADDRESS", "ROLE", "HEALTH", "CPUS", "LOAD", "FREE MEMORY", "GUESTS", "CLASSES"}
			cells := slices.Clone(header)
			for _, m := range c.Members {
				role := m.Role
				if m.Leader {
					role += " (leader)"
				}
				if m.Name == c.Member {
					role += " *"
				}
				cells = append(cells, m.Name, m.Address, role, strings.ToUpper(m.Health), fmt.Sprint(m.CPUs), fmt.Sprintf("%.2f", m.Load),
					humanBytes(m.FreeMemory), fmt.Sprint(m.Guests), classCell(m.Classes))
			}
			return writeColumns(a.stdout, len(header), cells)
		},
	}
	list.Flags().StringVar(&format, "format", "table", "output: table, json or yaml")

	var force bool
	remove := &cobra.Command{
		Use:   "remove NAME [--force]",
		Short: "Remove a member from the cluster (it leaves, and keeps its guests as its own)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().ClusterRemove(cmd.Context(), args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Member %s removed.\n", args[0])
			return nil
		},
	}
	remove.Flags().BoolVar(&force, "force", false, "remove a member that still has guests, dropping them from the cluster's records")
	cluster.AddCommand(initCmd, add, join, list, remove)
	return cluster
}

// classCell is a member's class verdicts in one cell: container,vm ok;
// others with !.
func classCell(classes map[string]string) string {
	if len(classes) == 0 {
		return "-"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(classes)) {
		if classes[k] == "ok" {
			out = append(out, k)
		} else {
			out = append(out, "!"+k)
		}
	}
	return strings.Join(out, ",")
}
