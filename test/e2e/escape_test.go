package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyOfAGuestWhoseEtcLinksToTheHost: a guest replaced its /etc by a
// symlink to a host directory; `polyvisor copy` used to reset the copy's
// machine id through that link, emptying the host's file as root. Every
// path the daemon touches in a guest's tree now stays inside it: the host
// file is intact, and the copy either succeeds or fails with one line.
func TestCopyOfAGuestWhoseEtcLinksToTheHost(t *testing.T) {
	requireRoot(t)
	d := env.main
	for _, c := range []struct{ name, flag string }{{"e2e-esc-overlay", ""}, {"e2e-esc-copy", "--copy"}} {
		t.Run(c.name, func(t *testing.T) {
			host := t.TempDir()
			hostFile := filepath.Join(host, "machine-id")
			const hostID = "host-machine-id-0123456789abcdef\n"
			if err := os.WriteFile(hostFile, []byte(hostID), 0o644); err != nil {
				t.Fatal(err)
			}
			var flags []string
			if c.flag != "" {
				flags = append(flags, c.flag)
			}
			g := launch(t, d, "busybox", c.name, flags...)
			// The link's target is read by the daemon on the host, not by
			// the guest: its absolute path names the host's dir.
			d.Must(t, "exec", g.Name, "--", "sh", "-c", "mv /etc /etc.orig && ln -s "+host+" /etc")
			d.Must(t, "stop", g.Name, "--force")
			dst := c.name + "-dst"
			t.Cleanup(func() { d.Run("delete", "--force", dst) })
			out, errOut, code := d.Run("copy", g.Name, dst)
			if data, err := os.ReadFile(hostFile); err != nil || string(data) != hostID {
				t.Errorf("the host's %s after the copy: %q %v, want it untouched", hostFile, data, err)
			}
			if entries, _ := os.ReadDir(host); len(entries) != 1 {
				t.Errorf("the host dir holds %v after the copy, want machine-id alone", entries)
			}
			if msg := strings.TrimSpace(errOut); code != 0 && (strings.Count(msg, "\n") > 0 || !strings.HasPrefix(msg, "Error: ")) {
				t.Errorf("the copy failed with %q, want one 'Error:' line", errOut)
			}
			if code == 0 && !strings.Contains(out, "copied from "+g.Name) {
				t.Errorf("copy said %q", out)
			}
		})
	}
}
