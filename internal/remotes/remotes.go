// Package remotes is the CLI's side of the network: the other polyvisor
// daemons a user has added (each pinned by its certificate's
// fingerprint), which of them commands go to by default, and the user's
// client certificate, kept in the user's config dir.
package remotes

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/trust"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Local names the daemon on this host's unix socket (--socket).
const Local = "local"

// DirEnv overrides where the config lives.
const DirEnv = "POLYVISOR_CONFIG_DIR"

// Remote is a daemon reached over HTTPS.
type Remote struct {
	Address     string `yaml:"address"`
	Fingerprint string `yaml:"fingerprint"`
}

// Config is the user's remotes and default, as kept in remotes.yaml.
type Config struct {
	dir     string
	Default string            `yaml:"default,omitempty"`
	Remotes map[string]Remote `yaml:"remotes,omitempty"`
}

// Dir is where the config lives: $POLYVISOR_CONFIG_DIR, else
// $XDG_CONFIG_HOME/polyvisor, else ~/.config/polyvisor.
func Dir() (string, error) {
	if dir := os.Getenv(DirEnv); dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "polyvisor"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("config dir: %w (set %s)", err, DirEnv)
	}
	return filepath.Join(home, ".config", "polyvisor"), nil
}

func (c *Config) file() string { return filepath.Join(c.dir, "remotes.yaml") }

// Load reads the config in dir; none yet is an empty one.
func Load(dir string) (*Config, error) {
	c := &Config{dir: dir}
	data, err := os.ReadFile(c.file())
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remotes: %w", err)
	}
	if err := yaml.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("remotes: %s: %w (fix it, or remove it to forget every remote)", c.file(), err)
	}
	if _, ok := c.Remotes[Local]; ok {
		return nil, fmt.Errorf("remotes: %s names a remote %q, this host's own socket: rename it", c.file(), Local)
	}
	return c, nil
}

// Save writes the config, readable by its owner alone.
func (c *Config) Save() error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("remotes: %w", err)
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(c.file(), data, 0o600)
}

// DefaultName is the remote commands go to when none is named.
func (c *Config) DefaultName() string {
	if c.Default == "" {
		return Local
	}
	return c.Default
}

// Names lists the remotes, local first, then by name.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Remotes)+1)
	for name := range c.Remotes {
		names = append(names, name)
	}
	slices.Sort(names)
	return append([]string{Local}, names...)
}

// Lookup finds a remote by name; Local is not one (it has no address).
func (c *Config) Lookup(name string) (Remote, error) {
	r, ok := c.Remotes[name]
	if !ok {
		return Remote{}, fmt.Errorf("%w: no remote named %q: 'polyvisor remote list' shows them, 'polyvisor remote add' adds one", api.ErrNotFound, name)
	}
	return r, nil
}

// CheckNewName says whether name may name a remote to add.
func (c *Config) CheckNewName(name string) error {
	if name == Local {
		return fmt.Errorf("%w: remote name %q is this host's own socket; pick another", api.ErrInvalid, name)
	}
	if err := trust.CheckName(name); err != nil {
		return err
	}
	if _, ok := c.Remotes[name]; ok {
		return fmt.Errorf("%w: remote %q: remove it first ('polyvisor remote remove %s') to add it again", api.ErrExists, name, name)
	}
	return nil
}

// Add records a remote.
func (c *Config) Add(name string, r Remote) error {
	if err := c.CheckNewName(name); err != nil {
		return err
	}
	if c.Remotes == nil {
		c.Remotes = map[string]Remote{}
	}
	c.Remotes[name] = r
	return nil
}

// Remove forgets a remote; commands go back to local if it was the
// default.
func (c *Config) Remove(name string) error {
	if _, err := c.Lookup(name); err != nil {
		return err
	}
	delete(c.Remotes, name)
	if c.Default == name {
		c.Default = ""
	}
	return nil
}

// Switch makes name the default remote.
func (c *Config) Switch(name string) error {
	if name != Local {
		if _, err := c.Lookup(name); err != nil {
			return err
		}
	}
	c.Default = name
	if name == Local {
		c.Default = ""
	}
	return nil
}

// ClientCertificate is the user's client key pair, made on first use.
func (c *Config) ClientCertificate() (tls.Certificate, error) {
	name := "polyvisor-client"
	if u, err := user.Current(); err == nil {
		host, _ := os.Hostname()
		name = u.Username + "@" + host
	}
	return pki.LoadOrCreate(filepath.Join(c.dir, "client.crt"), filepath.Join(c.dir, "client.key"), pki.Client, name)
}

// Split parses REMOTE:NAME: the remote ("" when none is named) and the
// name. A guest name never holds a colon (it is a DNS label).
func Split(arg string) (remote, name string) {
	remote, name, found := strings.Cut(arg, ":")
	if !found {
		return "", arg
	}
	return remote, name
}
