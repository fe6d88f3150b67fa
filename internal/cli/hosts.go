package cli

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// The vendor hosts (`host add|list|remove`) and `move`: a vSphere or
// libvirt host's guests, HOST:NAME, beside the daemon's own.

// hostPasswordEnv gives host add a password without a terminal or stdin.
const hostPasswordEnv = "POLYVISOR_HOST_PASSWORD"

func (a *app) vendorHostCmds() []*cobra.Command {
	var fingerprint string
	var passwordStdin bool
	add := &cobra.Command{
		Use:   "add NAME URL [--insecure-fingerprint SHA256] [--password-stdin]",
		Short: "Manage a vSphere/ESXi host (vsphere://USER@HOST[/DATACENTER]) or a libvirt host (qemu:///system, qemu+ssh://USER@HOST/system, lxc:///, xen:///system) beside this one",
		Long: `Connect the daemon to a host another product manages, check that it answers,
and keep it: its guests are then listed with the daemon's own, and HOST:NAME
names one wherever a guest's name is taken (info, start, stop, restart,
snapshot, config set cpus/memory, delete, console, export, move).

A vSphere password is asked on the terminal, read from stdin with
--password-stdin, or taken from $` + hostPasswordEnv + `. It is kept in the
daemon's root-only hosts file, never in a guest's definition or a log.
A host whose certificate no authority here vouches for is refused with its
SHA-256 fingerprint: check it, then add it again with --insecure-fingerprint.`,
		Args: exactArgs(2, "NAME URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := a.hostPassword(args[1], passwordStdin)
			if err != nil {
				return err
			}
			h, err := a.client().AddHost(cmd.Context(), api.VendorHostAdd{Name: args[0], URL: args[1], Password: password, Fingerprint: fingerprint})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Host %s added (%s, %s guests): its guests are %s:NAME.\n", h.Name, h.Kind, guestCount(h), h.Name)
			return nil
		},
	}
	add.Flags().StringVar(&fingerprint, "insecure-fingerprint", "", "accept the host's certificate of this SHA-256 fingerprint instead of a chain to a trusted authority")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin's first line")

	var format string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the vendor hosts, their kinds and how many guests each has",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, formats...); err != nil {
				return err
			}
			hosts, err := a.client().Hosts(cmd.Context())
			if err != nil {
				return err
			}
			if format != "table" {
				return printStructured(a.stdout, format, hosts)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tURL\tGUESTS\tSTATUS")
			for _, h := range hosts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, h.Kind, h.URL, guestCount(h), orDash(h.Error))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&format, "format", "table", "output: table, json or yaml")

	remove := &cobra.Command{
		Use:     "remove NAME...",
		Aliases: []string{"rm"},
		Short:   "Forget vendor hosts and their credentials; their guests stay on them",
		Args:    minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := a.client().RemoveHost(cmd.Context(), name); err != nil {
					return err
				}
			}
			return nil
		},
	}
	return []*cobra.Command{add, list, remove}
}

// guestCount is a host's number of guests, or "-" when it did not answer.
func guestCount(h api.VendorHost) string {
	if h.Guests == nil {
		return "-"
	}
	return strconv.Itoa(*h.Guests)
}

// hostPassword finds a vSphere host's password: none for a libvirt URI
// (ssh keys, TLS certificates or the local socket's permissions), else
// stdin's first line, the environment, or the terminal.
func (a *app) hostPassword(rawURL string, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("--password-stdin: read the password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "vsphere" {
		return "", nil // the daemon says what is wrong with the URL
	}
	if _, inURL := u.User.Password(); inURL {
		return "", nil
	}
	if p := os.Getenv(hostPasswordEnv); p != "" {
		return p, nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return "", fmt.Errorf("password: none given: pass --password-stdin, set %s, or run on a terminal", hostPasswordEnv)
	}
	fmt.Fprintf(a.stderr, "Password for %s: ", rawURL)
	p, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return string(p), nil
}

func (a *app) moveCmd() *cobra.Command {
	var req api.GuestMove
	cmd := &cobra.Command{
		Use:   "move HOST:NAME [--name LOCAL] [--network A,B] [--start] [--delete-source] | move NAME --target MEMBER",
		Short: "Make a vendor host's stopped guest a polyvisor guest (export, import here keeping CPUs, memory, firmware, disks, MACs), or move a cluster's guest to another member (VMs live, containers cold unless CRIU works)",
		Args:  exactArgs(1, "HOST:NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			op, err := c.MoveGuest(cmd.Context(), name, req)
			if err != nil {
				return err
			}
			done, err := c.WaitResult(cmd.Context(), op, a.progress("text", "move "+name))
			for _, w := range done.Warnings {
				fmt.Fprintln(a.stderr, "warning:", w)
			}
			if err != nil {
				return err
			}
			if req.Target != "" {
				fmt.Fprintf(a.stdout, "Moved %s to member %s.\n", name, req.Target)
				return nil
			}
			fmt.Fprintf(a.stdout, "Moved %s to guest %s.\n", name, done.Result)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "the local guest's name (default: the source's, made a DNS label: ha-host_VM0 is ha-host-vm0)")
	f.StringSliceVar(&req.Networks, "network", nil, "networks for the guest's NICs, in order (default: the default network)")
	f.BoolVar(&req.Start, "start", false, "start the local guest once it is made")
	f.BoolVar(&req.DeleteSource, "delete-source", false, "delete the source guest on its host once the local one is made")
	f.StringVar(&req.Target, "target", "", "in a cluster: the member to move the guest to")
	return cmd
}

// listWithHosts writes list's output for a daemon with vendor hosts: its
// own guests, then the hosts' (HOST:NAME), with a HOST column.
func (a *app) listWithHosts(ctx context.Context, c *client.Client, format string, hg api.HostGuests) error {
	if format != "table" {
		guests, err := c.Guests(ctx)
		if err != nil {
			return err
		}
		for _, f := range hg.Errors {
			fmt.Fprintf(a.stderr, "warning: host %s: its guests are not listed: %s\n", f.Host, f.Error)
		}
		return printStructured(a.stdout, format, append(guests, hg.Guests...))
	}
	rows, err := c.GuestSummaries(ctx)
	if err != nil {
		return err
	}
	return printGuestTable(a.stdout, append(rows, a.hostRows(hg, "")...), true)
}

// importToHost deploys an OVA to a vendor host as guest name.
func (a *app) importToHost(ctx context.Context, c *client.Client, host, name, path string) error {
	if c.Remote() {
		return fmt.Errorf("import to %s:%s: the daemon reads %s on its own host; run the import there", host, name, path)
	}
	op, err := c.HostImport(ctx, host, api.Import{Path: path, Name: name})
	if err != nil {
		return err
	}
	op, err = c.WaitResult(ctx, op, a.progress("text", "import "+filepath.Base(path)))
	printWarnings(op)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Guest %s imported from %s\n", op.Result, filepath.Base(path))
	return nil
}

// hostRows turns the vendor hosts' guests into list's rows, naming each
// host that did not answer on stderr.
func (a *app) hostRows(hg api.HostGuests, only string) []api.GuestSummary {
	for _, f := range hg.Errors {
		if only == "" || f.Host == only {
			fmt.Fprintf(a.stderr, "warning: host %s: its guests are not listed: %s\n", f.Host, f.Error)
		}
	}
	var rows []api.GuestSummary
	for _, g := range hg.Guests {
		if only != "" && g.Host != only {
			continue
		}
		row := api.GuestSummary{
			Host: g.Host, Name: g.Name, Type: g.Type, Class: g.Class, State: g.State, Arch: cmp.Or(g.Arch, "-"),
			CPUs: g.CPUs, Memory: g.Memory, IPv4: g.IPv4, Error: g.Error,
		}
		if len(g.Disks) > 0 {
			row.RootDisk = &api.DiskSummary{Kind: g.Disks[0].Kind, Size: g.Disks[0].Size}
		}
		rows = append(rows, row)
	}
	return rows
}
