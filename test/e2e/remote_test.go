package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A second daemon, in a network namespace of the test's own and serving
// HTTPS, is added to this host's CLI with a token and managed from here:
// a guest launched, listed and exec'd into as REMOTE:NAME, the default
// switched to it; once its trust is removed, it refuses this CLI.
func TestARemoteDaemonIsManagedFromHere(t *testing.T) {
	requireRoot(t)
	far, err := testenv.StartInNetns(t.TempDir(), env.bin, netnsName(t), "--default-network", "none", "--listen", "0.0.0.0:8443")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := far.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	farAddr := linkNetns(t, far.Netns)
	far.Must(t, "template", "build", "busybox")
	t.Setenv("POLYVISOR_CONFIG_DIR", filepath.Join(t.TempDir(), "client"))
	here := env.main

	token := strings.TrimSpace(far.Must(t, "trust", "add", "laptop"))
	added := here.Must(t, "remote", "add", "far", token)
	if !strings.Contains(added, farAddr+":8443") {
		t.Fatalf("remote add reached the daemon elsewhere than its namespace's address %s: %s", farAddr, added)
	}
	if out := here.Must(t, "remote", "list"); !strings.Contains(out, "far") || !strings.Contains(out, "local *") {
		t.Fatalf("remote list after add: %s", out)
	}
	expectError(t, here, "the token is not valid", "remote", "add", "again", token)

	here.Must(t, "launch", "busybox", "far:web")
	if out := here.Must(t, "list", "far:"); !strings.Contains(out, "web") || !strings.Contains(out, "RUNNING") {
		t.Fatalf("list far: %s", out)
	}
	if out := here.Must(t, "list"); strings.Contains(out, " web ") {
		t.Fatalf("the local list shows the remote's guest: %s", out)
	}
	if gs, _ := far.Guests(); len(gs) != 1 || gs[0].Name != "web" {
		t.Fatalf("the remote daemon's own list: %+v", gs)
	}
	if out := here.Must(t, "exec", "far:web", "--", "echo", "hello-remote"); out != "hello-remote\n" {
		t.Fatalf("exec far:web: %q", out)
	}
	if _, _, code := here.Run("exec", "far:web", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exec far:web exiting 7: the CLI exited %d", code)
	}
	var g api.Guest
	if err := jsonUnmarshal(here.Must(t, "--remote", "far", "info", "web", "--format", "json"), &g); err != nil || g.State != "running" {
		t.Fatalf("--remote far info web: %+v, %v", g, err)
	}
	expectError(t, here, "names remote far but --remote says local", "--remote", "local", "info", "far:web")

	// A file of this machine is imported into the remote by sending it.
	here.Must(t, "create", "busybox", "upload-src")
	t.Cleanup(func() { here.Run("delete", "--force", "upload-src") })
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	here.Must(t, "export", "upload-src", tarball, "--format", "tar")
	here.Must(t, "import", tarball, "far:uploaded")
	if gs, _ := far.Guests(); len(gs) != 2 || gs[0].Name != "uploaded" || gs[0].Type != "container" {
		t.Fatalf("the remote after an import by upload: %+v", gs)
	}
	if entries, _ := os.ReadDir(filepath.Join(far.StateDir, "uploads")); len(entries) != 0 {
		t.Fatalf("the upload is left on the remote after its import: %v", entries)
	}

	// The default, once switched, is the remote's (the testenv passes
	// --socket, which means local: this runs the CLI without it).
	here.Must(t, "remote", "switch", "far")
	cmd := exec.Command(filepath.Join(env.bin, "polyvisor"), "list", "--format", "json")
	cmd.Env = append(os.Environ(), "POLYVISOR_SOCKET="+here.Socket)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"name": "web"`) {
		t.Fatalf("list with far the default: %v: %s", err, out)
	}
	here.Must(t, "remote", "switch", "local")

	if out := far.Must(t, "trust", "list"); !strings.Contains(out, "laptop") || !strings.Contains(out, "client") {
		t.Fatalf("trust list on the remote: %s", out)
	}
	far.Must(t, "trust", "remove", "laptop")
	expectError(t, here, "not trusted here", "list", "far:")
	here.Must(t, "remote", "remove", "far")
	expectError(t, here, "no remote named", "list", "far:")
}

// linkNetns joins the test's namespace to the host's by a veth pair on a
// /30 of the benchmarking range (198.18.0.0/15, RFC 2544), and returns
// the namespace's address; the pair goes with the namespace.
func linkNetns(t *testing.T, netns string) string {
	t.Helper()
	n := os.Getpid() % 16000
	hostAddr := fmt.Sprintf("198.18.%d.%d", n/64, (n%64)*4+1)
	nsAddr := fmt.Sprintf("198.18.%d.%d", n/64, (n%64)*4+2)
	hostEnd, nsEnd := fmt.Sprintf("pvr%d", n), fmt.Sprintf("pvb%d", n)
	for _, args := range [][]string{
		{"link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd, "netns", netns},
		{"addr", "add", hostAddr + "/30", "dev", hostEnd},
		{"link", "set", hostEnd, "up"},
		{"-n", netns, "addr", "add", nsAddr + "/30", "dev", nsEnd},
		{"-n", netns, "link", "set", nsEnd, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "delete", hostEnd).Run()
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "delete", hostEnd).Run() })
	return nsAddr
}
