package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/remotes"
)

// Guest arguments naming a remote are refused in one line, before any
// request, when they name no guest, a remote that was never added, a
// remote --remote contradicts, or (for copy) two remotes. Nothing
// listens: a command that got as far as a request would fail otherwise.
func TestRemoteArgumentsAreChecked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config")
	t.Setenv(remotes.DirEnv, dir)
	conf, err := remotes.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A remote at an address nothing serves: the checks come first.
	if err := conf.Add("far", remotes.Remote{Address: "127.0.0.1:1", Fingerprint: strings.Repeat("00", 32)}); err != nil {
		t.Fatal(err)
	}
	if err := conf.Save(); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"info", "far:"}, `"far:" names no guest`},
		// A prefix that names no remote is the daemon's to read (a vendor
		// host's HOST:NAME): it goes to the local socket.
		{[]string{"info", "near:web"}, "cannot reach the polyvisor daemon at /"},
		{[]string{"--remote", "local", "info", "far:web"}, "names remote far but --remote says local"},
		{[]string{"list", "far"}, `"far": name a remote as REMOTE:`},
		{[]string{"copy", "far:web", "local:web2"}, "are on different remotes"},
		{[]string{"copy", "web", "far:web2"}, "are on different remotes"},
		{[]string{"--remote", "near", "list"}, `no remote named "near"`},
		{[]string{"info", "far:web"}, "cannot reach the polyvisor daemon at 127.0.0.1:1"},
		{[]string{"remote", "add", "local", "tok"}, `remote name "local" is this host's own socket`},
		{[]string{"remote", "add", "far", "tok"}, `remote "far": remove it first`},
		{[]string{"remote", "add", "other", "not-a-token"}, "token: not one that 'polyvisor trust add' printed"},
		{[]string{"remote", "switch", "near"}, `no remote named "near"`},
	} {
		root := NewRoot()
		root.SetArgs(append(c.args, "--socket", socket))
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	// Refused commands changed nothing.
	after, err := remotes.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if names := after.Names(); len(names) != 2 || after.DefaultName() != remotes.Local {
		t.Fatalf("remotes after refused commands: %v, default %s", names, after.DefaultName())
	}
}
