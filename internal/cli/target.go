package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/remotes"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// Which daemon a command goes to: this host's socket, or a remote's
// HTTPS; and the REMOTE:NAME arguments that name one.

// skipRemote marks commands that reach no daemon through the remotes:
// the daemon itself, and those managing the remotes.
const skipRemote = "polyvisor/skip-remote"

// resolve picks the daemon a command goes to: --remote's, else the local
// socket when --socket is given, else the default remote.
func (a *app) resolve(cmd *cobra.Command) error {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[skipRemote] != "" {
			return nil
		}
	}
	name := a.remote
	if name == "" && !cmd.Flags().Changed("socket") {
		conf, err := a.config()
		if err != nil {
			return err
		}
		name = conf.DefaultName()
	}
	c, err := a.connect(name)
	if err != nil {
		return err
	}
	a.base = c
	return nil
}

// config is the user's remotes.
func (a *app) config() (*remotes.Config, error) {
	if a.conf != nil {
		return a.conf, nil
	}
	dir, err := remotes.Dir()
	if err != nil {
		return nil, err
	}
	if a.conf, err = remotes.Load(dir); err != nil {
		return nil, err
	}
	return a.conf, nil
}

// connect returns the client of the named remote.
func (a *app) connect(name string) (*client.Client, error) {
	if name == "" || name == remotes.Local {
		return client.New(a.socket), nil
	}
	conf, err := a.config()
	if err != nil {
		return nil, err
	}
	r, err := conf.Lookup(name)
	if err != nil {
		return nil, err
	}
	cert, err := conf.ClientCertificate()
	if err != nil {
		return nil, err
	}
	return client.NewRemote(r.Address, pki.PinnedConfig(cert, r.Fingerprint)), nil
}

// remoteArg parses a REMOTE: argument (list's) into that remote's client.
func (a *app) remoteArg(arg string) (*client.Client, error) {
	remote, rest := remotes.Split(arg)
	if remote == "" || rest != "" {
		return nil, fmt.Errorf("%q: name a remote as REMOTE: (with the colon), or give none for the default one", arg)
	}
	return a.named(remote, arg)
}

// named is the client of the remote arg names, which --remote must not
// contradict.
func (a *app) named(remote, arg string) (*client.Client, error) {
	if a.remote != "" && a.remote != remote {
		return nil, fmt.Errorf("%q names remote %s but --remote says %s: give one of them", arg, remote, a.remote)
	}
	return a.connect(remote)
}

// guestPair parses two guest arguments that must live on one daemon
// (copy's source and target).
func (a *app) guestPair(first, second string) (*client.Client, string, string, error) {
	r1, _ := remotes.Split(first)
	r2, _ := remotes.Split(second)
	if r2 != "" && r1 != r2 {
		return nil, "", "", fmt.Errorf("%s and %s are on different remotes: copy works within one daemon; export and import to move a guest between them", first, second)
	}
	c, name1, err := a.guest(first)
	if err != nil {
		return nil, "", "", err
	}
	_, name2 := remotes.Split(second)
	if name2 == "" {
		return nil, "", "", fmt.Errorf("%q names no guest: write REMOTE:NAME, or NAME alone", second)
	}
	return c, name1, name2, nil
}

// guest parses a guest argument, [REMOTE:]NAME: the client of the daemon
// that holds it, and its name there. A prefix that names no remote of the
// user's is the daemon's to read: HOST:NAME, a vendor host's guest.
func (a *app) guest(arg string) (*client.Client, string, error) {
	remote, name := remotes.Split(arg)
	if name == "" {
		return nil, "", fmt.Errorf("%q names no guest: write REMOTE:NAME or HOST:NAME, or NAME alone", arg)
	}
	if remote == "" {
		return a.client(), name, nil
	}
	if !a.isRemote(remote) {
		return a.client(), arg, nil
	}
	c, err := a.named(remote, arg)
	return c, name, err
}

// isRemote says whether name is a remote of the user's (or local, this
// host's socket) rather than a vendor host of the daemon's.
func (a *app) isRemote(name string) bool {
	if name == remotes.Local {
		return true
	}
	conf, err := a.config()
	if err != nil {
		return true // let named say what is wrong with the config
	}
	_, err = conf.Lookup(name)
	return err == nil
}
