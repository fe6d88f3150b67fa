package cli

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/remotes"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func (a *app) launchCmd(verb string, start bool) *cobra.Command {
	var req api.GuestCreate
	var format string
	short := "Create a guest from a template and start it"
	if !start {
		short = "Create a guest from a template without starting it"
	}
	cmd := &cobra.Command{
		Use:   verb + " TEMPLATE [REMOTE:]NAME",
		Short: short,
		Args:  exactArgs(2, "TEMPLATE NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			if err := checkCounts(cmd, req.CPUs, req.Processes); err != nil {
				return err
			}
			if cmd.Flags().Changed("disk") {
				if _, err := guest.ParseDiskQuota("--disk", req.Disk); err != nil {
					return err
				}
			}
			c, name, err := a.guest(args[1])
			if err != nil {
				return err
			}
			req.Template, req.Name, req.Start = args[0], name, start
			op, err := c.CreateGuest(cmd.Context(), req)
			if err != nil {
				return err
			}
			if err := c.Wait(cmd.Context(), op, a.progress(format, verb+" "+req.Name)); err != nil {
				return err
			}
			if format == "json" {
				g, err := c.Guest(cmd.Context(), req.Name)
				if err != nil {
					return err
				}
				return printStructured(a.stdout, "json", g)
			}
			if start {
				fmt.Fprintf(a.stdout, "Guest %s launched from %s\n", req.Name, req.Template)
			} else {
				fmt.Fprintf(a.stdout, "Guest %s created from %s\n", req.Name, req.Template)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Type, "type", "container", "guest type: container, vm or uml")
	f.StringVar(&req.Engine, "engine", "", "driver that runs the guest, among those serving its type (see host check; default: the type's default)")
	f.StringVar(&req.Arch, "arch", "", "architecture: amd64/x86_64, arm64/aarch64, riscv64, ppc64el/ppc64le, s390x, armhf/arm (defaults to the template's)")
	f.IntVar(&req.CPUs, "cpus", 0, "CPU limit, in CPUs (default 1)")
	f.StringVar(&req.Memory, "memory", "", "memory limit, like 256MiB or 1GiB (default 256MiB)")
	f.BoolVar(&req.Force, "force", false, "accept memory beyond the host's (overcommit)")
	f.IntVar(&req.Processes, "processes", 0, "process limit (default 1024)")
	f.StringVar(&req.Disk, "disk", "", "containers: disk quota on what the guest writes, like 10GiB (the default), or none for no quota; VMs: grow the root disk to this size")
	f.BoolVar(&req.Copy, "copy", false, "give the guest a full private copy of the template (zone style) instead of an overlay")
	f.StringArrayVar(&req.Networks, "network", nil, "network to join (default polyvisor0, made on first use; none for no network)")
	f.StringArrayVar(&req.Publish, "publish", nil, "forward a host port to the guest: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp], on every host address (loopback too) unless HOSTIP")
	f.BoolVar(&req.Nesting, "nesting", false, "let an unprivileged container mount file systems and make namespaces of its own (CAP_SYS_ADMIN in its user namespace)")
	f.StringSliceVar(&req.Capabilities, "capabilities", nil, "replace the container root's capabilities: names, default for the default set, -NAME to drop one (like default,CAP_SYS_PTRACE,-CAP_NET_RAW)")
	f.StringVar(&req.IDMap, "idmap", "", "id map of an unprivileged container: isolated (host ids of its own, the default) or shared (one range with every shared guest)")
	f.BoolVar(&req.Privileged, "privileged", false, "run without a user namespace: container root is host root (implies --copy)")
	f.StringVar(&req.Isolation, "isolation", "", "containers: namespaces (the default), or chroot for the original jail: a chroot of the tree as a non-root host user, sharing the host's pids, network, hostname and IPC (its init is a login shell on the console)")
	f.StringVar(&req.Target, "target", "", "in a cluster: the member to run on (default: placed by free memory, load and class verdicts)")
	f.StringVar(&req.Spread, "spread", "", "in a cluster: an anti-affinity group; its guests go to distinct members while there are enough")
	f.BoolVar(&req.HA, "ha", false, "in a cluster: copy the guest's disks to another member periodically and run it there if its member is lost")
	f.StringVar(&format, "format", "text", "output: text or json")
	return cmd
}

func (a *app) listCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list [REMOTE:|HOST:]",
		Aliases: []string{"ls"},
		Short:   "List guests",
		Args:    rangeArgs(0, 1, "[REMOTE:|HOST:]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, formats...); err != nil {
				return err
			}
			c := a.client()
			vendorOnly := ""
			if len(args) == 1 {
				if remote, rest := remotes.Split(args[0]); remote != "" && rest == "" && !a.isRemote(remote) {
					vendorOnly = remote // HOST: lists that vendor host's guests
				} else {
					var err error
					if c, err = a.remoteArg(args[0]); err != nil {
						return err
					}
				}
			}
			hostGuests, err := c.HostGuests(cmd.Context())
			if errors.Is(err, api.ErrNotFound) && vendorOnly == "" {
				err = nil // a daemon older than vendor hosts
			}
			if err != nil {
				return err
			}
			if vendorOnly != "" {
				hosts, err := c.Hosts(cmd.Context())
				if err != nil {
					return err
				}
				if !slices.ContainsFunc(hosts, func(h api.VendorHost) bool { return h.Name == vendorOnly }) {
					return fmt.Errorf("%q: no remote named %q, nor vendor host: see 'polyvisor remote list' and 'polyvisor host list'", args[0], vendorOnly)
				}
				if format != "table" {
					var guests []api.Guest
					for _, g := range hostGuests.Guests {
						if g.Host == vendorOnly {
							guests = append(guests, g)
						}
					}
					return printStructured(a.stdout, format, guests)
				}
				return printGuestTable(a.stdout, a.hostRows(hostGuests, vendorOnly), true)
			}
			if len(hostGuests.Guests) > 0 || len(hostGuests.Errors) > 0 {
				return a.listWithHosts(cmd.Context(), c, format, hostGuests)
			}
			switch format {
			case "yaml":
				guests, err := c.Guests(cmd.Context())
				if err != nil {
					return err
				}
				return printStructured(a.stdout, format, guests)
			case "json":
				// The daemon's JSON as it came: decoding 1,000 guests
				// whole and encoding them again would take longer than
				// the daemon takes to answer.
				raw, err := c.GuestsJSON(cmd.Context())
				if err != nil {
					return err
				}
				return printIndented(a.stdout, raw)
			}
			rows, err := c.GuestSummaries(cmd.Context())
			if err != nil {
				return err
			}
			// A cluster's listing names each guest's member.
			members := slices.ContainsFunc(rows, func(g api.GuestSummary) bool { return g.Member != "" })
			return printGuestTable(a.stdout, rows, members)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output: table, json or yaml")
	return cmd
}

func (a *app) infoCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a guest's state, limits, processes and addresses",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "yaml", "json"); err != nil {
				return err
			}
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			g, err := c.Guest(cmd.Context(), name)
			if err != nil {
				return err
			}
			return printStructured(a.stdout, format, g)
		},
	}
	cmd.Flags().StringVar(&format, "format", "yaml", "output: yaml or json")
	return cmd
}

func (a *app) stateCmd(action, short string) *cobra.Command {
	var force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   action + " NAME...",
		Short: short,
		Args:  minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				c, name, err := a.guest(arg)
				if err != nil {
					return err
				}
				req := api.StateChange{Action: action, Force: force}
				if cmd.Flags().Changed("timeout") {
					req.Timeout = timeout.String()
				}
				op, err := c.ChangeState(cmd.Context(), name, req)
				if err != nil {
					return err
				}
				if err := c.Wait(cmd.Context(), op, a.progress("text", action+" "+name)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	if action != "start" {
		cmd.Flags().BoolVar(&force, "force", false, "kill at once instead of asking init to shut down")
		cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long init may take to shut down before it is killed")
	}
	return cmd
}

func (a *app) deleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete guests and everything they hold",
		Args:    minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				c, name, err := a.guest(arg)
				if err != nil {
					return err
				}
				op, err := c.DeleteGuest(cmd.Context(), name, force)
				if err != nil {
					return err
				}
				if err := c.Wait(cmd.Context(), op, a.progress("text", "delete "+name)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "stop a running guest first; remove a broken one (whose guest.yaml does not load) once none of its processes runs")
	return cmd
}

// checkCounts refuses --cpus and --processes given as 0 or less. The
// request carries 0 as "not given", for the default, so the daemon could
// not tell an explicit 0 from none.
func checkCounts(cmd *cobra.Command, cpus, processes int) error {
	f := cmd.Flags()
	if f.Changed("cpus") {
		if err := guest.CheckCPUs("--cpus", cpus); err != nil {
			return err
		}
	}
	if f.Changed("processes") {
		return guest.CheckProcesses("--processes", processes)
	}
	return nil
}

// exactArgs is cobra.ExactArgs with an error that shows the usage.
func exactArgs(n int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if n == 0 {
				return fmt.Errorf("%s takes no arguments", cmd.CommandPath())
			}
			return fmt.Errorf("%s needs %s (got %d argument(s)); see --help", cmd.CommandPath(), usage, len(args))
		}
		return nil
	}
}

func minArgs(n int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("%s needs %s; see --help", cmd.CommandPath(), usage)
		}
		return nil
	}
}

func rangeArgs(least, most int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < least || len(args) > most {
			return fmt.Errorf("%s needs %s (got %d argument(s)); see --help", cmd.CommandPath(), usage, len(args))
		}
		return nil
	}
}

// diskColumn is list's DISK: USED/SIZE of a container's disk quota, the
// size of a VM's root disk, "-" for a guest whose files are unbounded.
func diskColumn(d *api.DiskSummary) string {
	switch {
	case d == nil:
		return "-"
	case d.Kind == guest.DiskOverlayImage:
		return humanBytes(d.Used) + "/" + humanBytes(d.Size)
	default:
		return humanBytes(d.Size)
	}
}
