package remotes

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/pkg/api"
)

const fp = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// load loads the config in dir, which must load.
func load(t *testing.T, dir string) *Config {
	t.Helper()
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A user who never added a remote has no config yet: that is an empty
// one, commands going to the local socket, and nothing is written.
func TestAMissingConfigIsEmptyAndLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "polyvisor")
	c := load(t, dir)
	if got := c.DefaultName(); got != Local {
		t.Errorf("DefaultName = %q, want %q", got, Local)
	}
	if got := c.Names(); !slices.Equal(got, []string{Local}) {
		t.Errorf("Names = %v, want only local", got)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load made %s: %v", dir, err)
	}
}

// What Add and Switch record, Save keeps and Load gives back; the file
// is the owner's alone, as it says which daemons to trust.
func TestAddSaveLoadRoundTrips(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "polyvisor")
	c := load(t, dir)
	want := map[string]Remote{
		"b":     {Address: "b.example:8443", Fingerprint: fp},
		"a.lan": {Address: "[fd00::1]:8443", Fingerprint: fp[:32] + fp[:32]},
	}
	for name, r := range want {
		if err := c.Add(name, r); err != nil {
			t.Fatalf("Add(%q): %v", name, err)
		}
	}
	if err := c.Switch("b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "remotes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("remotes.yaml mode %v, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("config dir: %v, %v; want mode 0700", st, err)
	}
	got := load(t, dir)
	if got.DefaultName() != "b" {
		t.Errorf("DefaultName after reload = %q, want b", got.DefaultName())
	}
	for name, r := range want {
		if g, err := got.Lookup(name); err != nil || g != r {
			t.Errorf("Lookup(%q) after reload = %+v, %v; want %+v", name, g, err, r)
		}
	}
	if names := got.Names(); !slices.Equal(names, []string{Local, "a.lan", "b"}) {
		t.Errorf("Names after reload = %v", names)
	}
}

// local is the socket, not a remote; names follow the trust rules; a
// name is added once.
func TestAddRefusesLocalBadAndDuplicateNames(t *testing.T) {
	c := load(t, t.TempDir())
	r := Remote{Address: "b.example:8443", Fingerprint: fp}
	if err := c.Add(Local, r); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Add(local): %v, want api.ErrInvalid", err)
	}
	for _, name := range []string{"", "b:c", "a/b", "-b"} {
		if err := c.Add(name, r); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Add(%q): %v, want api.ErrInvalid", name, err)
		}
	}
	if err := c.Add("b", r); err != nil {
		t.Fatal(err)
	}
	other := Remote{Address: "other:8443", Fingerprint: fp}
	if err := c.Add("b", other); !errors.Is(err, api.ErrExists) {
		t.Errorf("second Add(b): %v, want api.ErrExists", err)
	}
	if got, _ := c.Lookup("b"); got != r {
		t.Errorf("a refused Add replaced b with %+v", got)
	}
	if names := c.Names(); !slices.Equal(names, []string{Local, "b"}) {
		t.Errorf("Names = %v, want local and b only", names)
	}
}

// Forgetting the default remote must not leave commands pointed at a
// remote that is gone.
func TestRemovingTheDefaultGoesBackToLocal(t *testing.T) {
	c := load(t, t.TempDir())
	for _, name := range []string{"a", "b"} {
		if err := c.Add(name, Remote{Address: name + ":8443", Fingerprint: fp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Switch("b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if got := c.DefaultName(); got != "b" {
		t.Errorf("removing another remote changed the default to %q", got)
	}
	if err := c.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if got := c.DefaultName(); got != Local {
		t.Errorf("DefaultName after removing it = %q, want local", got)
	}
	if _, err := c.Lookup("b"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Lookup of a removed remote: %v, want api.ErrNotFound", err)
	}
	if err := c.Remove("b"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second Remove: %v, want api.ErrNotFound", err)
	}
	if err := c.Remove(Local); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Remove(local): %v, want api.ErrNotFound", err)
	}
}

// Switch goes only to a remote that exists, or back to local, which is
// kept as no default at all.
func TestSwitchGoesToKnownRemotesOrLocal(t *testing.T) {
	dir := t.TempDir()
	c := load(t, dir)
	if err := c.Add("b", Remote{Address: "b:8443", Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	if err := c.Switch("nowhere"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Switch(nowhere): %v, want api.ErrNotFound", err)
	}
	if got := c.DefaultName(); got != Local {
		t.Errorf("a refused Switch changed the default to %q", got)
	}
	if err := c.Switch("b"); err != nil || c.DefaultName() != "b" {
		t.Errorf("Switch(b): %v, default %q", err, c.DefaultName())
	}
	if err := c.Switch(Local); err != nil {
		t.Fatalf("Switch(local): %v", err)
	}
	if c.DefaultName() != Local || c.Default != "" {
		t.Errorf("after Switch(local) DefaultName = %q, Default = %q; want local and none", c.DefaultName(), c.Default)
	}
}

func TestNamesPutLocalFirstThenSorted(t *testing.T) {
	c := load(t, t.TempDir())
	for _, name := range []string{"zeta", "Alpha", "beta", "a", "m1"} {
		if err := c.Add(name, Remote{Address: name + ":8443", Fingerprint: fp}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := c.Names(), []string{Local, "Alpha", "a", "beta", "m1", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
}

// REMOTE:NAME splits at the first colon; no colon is a name on the
// default remote.
func TestSplit(t *testing.T) {
	for _, tc := range []struct{ arg, remote, name string }{
		{"b:web", "b", "web"},
		{"web", "", "web"},
		{"b:", "b", ""},
		{":web", "", "web"},
		{"", "", ""},
		{"b:web:x", "b", "web:x"},
	} {
		if remote, name := Split(tc.arg); remote != tc.remote || name != tc.name {
			t.Errorf("Split(%q) = (%q, %q), want (%q, %q)", tc.arg, remote, name, tc.remote, tc.name)
		}
	}
}

// POLYVISOR_CONFIG_DIR wins over XDG_CONFIG_HOME, which wins over the
// home dir.
func TestDirHonoursTheEnvironment(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv(DirEnv, "/etc/pv-test")
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if got, err := Dir(); err != nil || got != "/etc/pv-test" {
		t.Errorf("with %s set: Dir = %q, %v", DirEnv, got, err)
	}
	t.Setenv(DirEnv, "")
	if got, err := Dir(); err != nil || got != filepath.Join("/xdg", "polyvisor") {
		t.Errorf("with XDG_CONFIG_HOME set: Dir = %q, %v; want /xdg/polyvisor", got, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	if got, err := Dir(); err != nil || got != filepath.Join(home, ".config", "polyvisor") {
		t.Errorf("with neither set: Dir = %q, %v; want %s/.config/polyvisor", got, err, home)
	}
}

// The client certificate is made once, in the config dir, and then
// reused: a new one each time would undo every trust the user earned.
func TestClientCertificateIsMadeOnceInTheDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "polyvisor")
	c := load(t, dir)
	first, err := c.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"client.crt", "client.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not made: %v", f, err)
		}
	}
	second, err := load(t, dir).ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if fingerprint(t, first) != fingerprint(t, second) {
		t.Error("the second call made a new client certificate")
	}
	leaf, err := pki.Leaf(first)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage %v, want client auth", leaf.ExtKeyUsage)
	}
}

func fingerprint(t *testing.T, p tls.Certificate) string {
	t.Helper()
	leaf, err := pki.Leaf(p)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(leaf)
}

// A hand-edited remotes.yaml cannot shadow this host's socket with a
// remote called local.
func TestARemoteNamedLocalIsRefusedOnLoad(t *testing.T) {
	dir := t.TempDir()
	data := "remotes:\n  local:\n    address: 127.0.0.1:8443\n    fingerprint: aa\n"
	if err := os.WriteFile(filepath.Join(dir, "remotes.yaml"), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `names a remote "local"`) {
		t.Fatalf("Load of a remotes.yaml with a remote named local: %v, want refused", err)
	}
}
