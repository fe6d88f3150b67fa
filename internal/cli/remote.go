package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/remotes"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

func (a *app) serverCmd() *cobra.Command {
	server := &cobra.Command{Use: "server", Short: "The daemon itself: its version, where it listens, its certificate"}
	var format string
	info := &cobra.Command{
		Use:   "info",
		Short: "Show the daemon's version, HTTPS addresses and certificate fingerprint",
		Args:  exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "yaml", "json"); err != nil {
				return err
			}
			s, err := a.client().Server(cmd.Context())
			if err != nil {
				return err
			}
			return printStructured(a.stdout, format, s)
		},
	}
	info.Flags().StringVar(&format, "format", "yaml", "output: yaml or json")
	server.AddCommand(info)
	return server
}

func (a *app) trustCmd() *cobra.Command {
	trust := &cobra.Command{Use: "trust", Short: "Who may reach this daemon over the network: one-time tokens, client certificates"}
	var expiry time.Duration
	var web bool
	add := &cobra.Command{
		Use:   "add NAME [--expiry DURATION] [--web]",
		Short: "Print a one-time token that lets a client (polyvisor remote add) be trusted as NAME, or with --web a browser's login link",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			issued, err := a.client().IssueTrustToken(cmd.Context(), api.TrustTokenCreate{Name: args[0], ExpiresIn: expiry.String(), Web: web})
			if err != nil {
				return err
			}
			if web {
				// The first link alone on stdout; the others reach the
				// daemon by its other addresses.
				fmt.Fprintln(a.stdout, issued.URLs[0])
				fmt.Fprintf(a.stderr, "Login link for %s: it works once, until %s; the session it opens lasts a day.\n",
					issued.Name, issued.ExpiresAt.Local().Format(time.DateTime))
				for _, u := range issued.URLs[1:] {
					fmt.Fprintf(a.stderr, "  or: %s\n", u)
				}
				return nil
			}
			// The token alone on stdout, so that TOKEN=$(polyvisor trust add x) works.
			fmt.Fprintln(a.stdout, issued.Token)
			fmt.Fprintf(a.stderr, "Token for %s: it works once, until %s. On the client: polyvisor remote add REMOTE-NAME TOKEN\n",
				issued.Name, issued.ExpiresAt.Local().Format(time.DateTime))
			return nil
		},
	}
	add.Flags().DurationVar(&expiry, "expiry", time.Hour, "how long the token works")
	add.Flags().BoolVar(&web, "web", false, "a one-time login link for the web console (https://ADDR/ui/) instead of a token")

	var format string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List trusted clients and tokens not used yet",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, formats...); err != nil {
				return err
			}
			entries, err := a.client().TrustList(cmd.Context())
			if err != nil {
				return err
			}
			if format != "table" {
				return printStructured(a.stdout, format, entries)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tFINGERPRINT\tADDED\tEXPIRES")
			for _, e := range entries {
				expires := "-"
				if !e.ExpiresAt.IsZero() {
					expires = e.ExpiresAt.Local().Format(time.DateTime)
				}
				fp := e.Fingerprint
				if fp == "" {
					fp = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, e.Kind, fp, e.AddedAt.Local().Format(time.DateTime), expires)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&format, "format", "table", "output: table, json or yaml")

	remove := &cobra.Command{
		Use:     "remove NAME...",
		Aliases: []string{"rm"},
		Short:   "Distrust clients (their open connections are closed) or revoke tokens",
		Args:    minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := a.client().RemoveTrust(cmd.Context(), name); err != nil {
					return err
				}
			}
			return nil
		},
	}
	trust.AddCommand(add, list, remove)
	return trust
}

func (a *app) remoteCmd() *cobra.Command {
	remote := &cobra.Command{
		Use:         "remote",
		Short:       "Other polyvisor daemons this CLI manages; then REMOTE:NAME wherever a guest is named",
		Annotations: map[string]string{skipRemote: "yes"},
	}
	var address string
	add := &cobra.Command{
		Use:   "add NAME TOKEN [--address HOST:PORT]",
		Short: "Add a remote daemon with a token from its 'polyvisor trust add'",
		Args:  exactArgs(2, "NAME TOKEN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			conf, err := a.config()
			if err != nil {
				return err
			}
			if err := conf.CheckNewName(name); err != nil {
				return err
			}
			token, err := api.ParseTrustToken(args[1])
			if err != nil {
				return err
			}
			cert, err := conf.ClientCertificate()
			if err != nil {
				return err
			}
			addrs := token.Addresses
			if address != "" {
				addrs = []string{address}
			}
			addr, err := redeem(cmd.Context(), addrs, pki.PinnedConfig(cert, token.Fingerprint), token.Secret)
			if err != nil {
				return fmt.Errorf("remote add %s: %w", name, err)
			}
			if err := conf.Add(name, remotes.Remote{Address: addr, Fingerprint: token.Fingerprint}); err != nil {
				return err
			}
			if err := conf.Save(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Remote %s added (%s, certificate %s); use %s:NAME or --remote %s\n", name, addr, token.Fingerprint, name, name)
			return nil
		},
	}
	add.Flags().StringVar(&address, "address", "", "reach the daemon here instead of at the token's addresses")

	var format string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List remotes; * marks the default",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, formats...); err != nil {
				return err
			}
			conf, err := a.config()
			if err != nil {
				return err
			}
			type row struct {
				Name        string `json:"name" yaml:"name"`
				Address     string `json:"address" yaml:"address"`
				Fingerprint string `json:"fingerprint,omitempty" yaml:"fingerprint,omitempty"`
				Default     bool   `json:"default" yaml:"default"`
			}
			var rows []row
			for _, n := range conf.Names() {
				r := row{Name: n, Address: "unix:" + a.socket, Default: n == conf.DefaultName()}
				if n != remotes.Local {
					r.Address, r.Fingerprint = conf.Remotes[n].Address, conf.Remotes[n].Fingerprint
				}
				rows = append(rows, r)
			}
			if format != "table" {
				return printStructured(a.stdout, format, rows)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tFINGERPRINT")
			for _, r := range rows {
				name, fp := r.Name, r.Fingerprint
				if r.Default {
					name += " *"
				}
				if fp == "" {
					fp = "-"
				} else {
					fp = fp[:min(len(fp), 16)]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", name, r.Address, fp)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&format, "format", "table", "output: table, json or yaml")

	remove := &cobra.Command{
		Use:     "remove NAME...",
		Aliases: []string{"rm"},
		Short:   "Forget remotes (this CLI's side only: the daemon trusts the certificate until its 'trust remove')",
		Args:    minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.changeConfig(func(conf *remotes.Config) error {
				for _, name := range args {
					if err := conf.Remove(name); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	switchCmd := &cobra.Command{
		Use:   "switch NAME",
		Short: "Send commands to this remote by default (local for this host's socket)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.changeConfig(func(conf *remotes.Config) error { return conf.Switch(args[0]) })
		},
	}
	remote.AddCommand(add, list, remove, switchCmd)
	return remote
}

// changeConfig loads the remotes, changes them and saves them.
func (a *app) changeConfig(change func(*remotes.Config) error) error {
	conf, err := a.config()
	if err != nil {
		return err
	}
	if err := change(conf); err != nil {
		return err
	}
	return conf.Save()
}

// redeem spends a token's secret at the first of addrs that answers,
// and returns that address. An address that cannot be reached moves on
// to the next; an answer (a refusal included) ends the search, since the
// token is spent or bad wherever it is tried.
func redeem(ctx context.Context, addrs []string, cfg *tls.Config, secret string) (string, error) {
	var last error
	for _, addr := range addrs {
		_, err := client.NewRemote(addr, cfg).RedeemTrustToken(ctx, secret)
		if err == nil {
			return addr, nil
		}
		if !errors.Is(err, client.ErrUnreachable) {
			return "", err
		}
		last = err
	}
	return "", fmt.Errorf("none of the token's addresses (%s) answered; pass --address HOST:PORT if the server is reached another way; the last: %w", strings.Join(addrs, ", "), last)
}
