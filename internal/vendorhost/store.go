package vendorhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// Kinds of vendor host.
const (
	KindVSphere = "vsphere"
	KindLibvirt = "libvirt"
)

// Entry is one host a user added. Password is kept here alone: the file is
// root's (0600) and nothing else (guest definitions, logs, the API's
// answers) ever holds it.
type Entry struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// URL has no password in it.
	URL         string    `json:"url"`
	Password    string    `json:"password,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	AddedAt     time.Time `json:"addedAt"`
}

// Credentials returns what opens the entry's host.
func (e Entry) Credentials() (Credentials, error) {
	u, err := url.Parse(e.URL)
	if err != nil {
		return Credentials{}, fmt.Errorf("host %s: url: %w", e.Name, err)
	}
	return Credentials{URL: u, Password: e.Password, Fingerprint: e.Fingerprint}, nil
}

// Store keeps the hosts in one root-only JSON file. Its methods are safe
// for concurrent use.
type Store struct {
	path string
	mu   sync.Mutex
}

// OpenStore returns the store kept at path.
func OpenStore(path string) *Store { return &Store{path: path} }

func (s *Store) load() ([]Entry, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	var entries []Entry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("hosts: %s: %w (fix it, or remove it to forget every host)", s.path, err)
	}
	return entries, nil
}

func (s *Store) save(entries []Entry) error {
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("hosts: %w", err)
	}
	return nil
}

// List returns every entry, by name.
func (s *Store) List() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := s.load()
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return entries, err
}

// Get returns the entry of name, ErrNotFound when there is none.
func (s *Store) Get(name string) (Entry, error) {
	entries, err := s.List()
	if err != nil {
		return Entry{}, err
	}
	for _, e := range entries {
		if e.Name == name {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("host %s: %w: no vendor host (nor remote) is named so: see 'polyvisor host list' and 'polyvisor remote list', or add it with 'polyvisor host add %s URL'", name, ErrNotFound, name)
}

// Add stores e, refusing a name already taken.
func (s *Store) Add(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := s.load()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(entries, func(x Entry) bool { return x.Name == e.Name }) {
		return fmt.Errorf("host %s: %w: remove it first or pick another name", e.Name, ErrConflict)
	}
	return s.save(append(entries, e))
}

// Remove forgets the host name.
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := s.load()
	if err != nil {
		return err
	}
	n := len(entries)
	entries = slices.DeleteFunc(entries, func(x Entry) bool { return x.Name == name })
	if len(entries) == n {
		return fmt.Errorf("host %s: %w: see 'polyvisor host list'", name, ErrNotFound)
	}
	return s.save(entries)
}

var validName = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

// CheckName says whether name may name a host: it is the HOST of HOST:NAME,
// so it holds no colon, and "local" names this host's own guests.
func CheckName(name string) error {
	if !validName().MatchString(name) {
		return fmt.Errorf("%w: host name %q: use 1 to 32 letters, digits, '_' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	if name == "local" {
		return fmt.Errorf("%w: host name %q names this host's own guests: pick another", ErrInvalid, name)
	}
	return nil
}

// libvirtSchemes are the drivers of the libvirt URIs polyvisor takes, each
// alone or with a transport (qemu+ssh, xen+tls...).
var libvirtSchemes = []string{"qemu", "lxc", "xen", "libxl"}

// ParseURL checks a host's URL as a user gives it and returns its kind,
// the URL with any password taken out, and that password. A vSphere URL
// names its user: vsphere://USER@HOST[:PORT][/DATACENTER].
func ParseURL(raw string) (kind string, u *url.URL, password string, err error) {
	u, err = url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", nil, "", fmt.Errorf("%w: url %q: write vsphere://USER@HOST[/DATACENTER] or a libvirt URI such as qemu:///system or qemu+ssh://USER@HOST/system", ErrInvalid, raw)
	}
	if u.User != nil {
		password, _ = u.User.Password()
		u.User = url.User(u.User.Username())
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	switch {
	case u.Scheme == "vsphere":
		if u.Host == "" || u.User == nil || u.User.Username() == "" {
			return "", nil, "", fmt.Errorf("%w: url %q: name the user and host, as vsphere://USER@HOST[/DATACENTER]", ErrInvalid, raw)
		}
		if strings.Count(strings.Trim(u.Path, "/"), "/") > 0 {
			return "", nil, "", fmt.Errorf("%w: url %q: the path names one datacenter, as vsphere://USER@HOST/DATACENTER", ErrInvalid, raw)
		}
		return KindVSphere, u, password, nil
	case slices.Contains(libvirtSchemes, driver):
		if !slices.Contains([]string{"", "unix", "ssh", "tcp", "tls"}, transport) {
			return "", nil, "", fmt.Errorf("%w: url %q: transport %q: use unix, ssh, tcp or tls", ErrInvalid, raw, transport)
		}
		return KindLibvirt, u, password, nil
	}
	return "", nil, "", fmt.Errorf("%w: url %q: scheme %q: use vsphere://, or a libvirt URI (qemu, lxc or xen, with +ssh, +tcp, +tls or +unix)", ErrInvalid, raw, u.Scheme)
}
