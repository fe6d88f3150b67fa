package peer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// A container that made the probe's name a symlink out of its root does
// not get a host file overwritten by CopyIn.
func TestCopyInStaysInsideTheRoot(t *testing.T) {
	testgate.RequireRoot(t, "needs root: chowns to the container's root")
	for name, link := range map[string]func(host string) string{
		"absolute link": func(host string) string { return host },
		"climbing link": func(host string) string { return "../../../../../../../../../../.." + host },
	} {
		t.Run(name, func(t *testing.T) {
			host := filepath.Join(t.TempDir(), "host-file")
			if err := os.WriteFile(host, []byte("host\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := &Runc{ID: "c0", Dir: t.TempDir()}
			if err := os.Mkdir(r.Rootfs(), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(link(host), filepath.Join(r.Rootfs(), "polyvisor-probe")); err != nil {
				t.Fatal(err)
			}
			err := r.CopyIn("/proc/self/exe", "/polyvisor-probe")
			if data, rerr := os.ReadFile(host); rerr != nil || string(data) != "host\n" {
				t.Errorf("the host file after CopyIn (err %v): %.20q %v, want it untouched", err, data, rerr)
			}
			if fi, serr := os.Lstat(host); serr != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("the host file's mode: %v %v, want 0600", fi, serr)
			}
			if err == nil {
				t.Error("CopyIn through a link out of the root succeeded, want an error")
			}
		})
	}
}
