package vmimage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// TestDebianVMBoots builds a Debian bookworm tree (debootstrap, about 20 s and 200 MB), makes
// it a VM template and boots it: busybox init from Debian's busybox package, bash on the
// serial console.
func TestDebianVMBoots(t *testing.T) {
	testgate.RequireLong(t, "debootstraps Debian")
	requireVMTools(t, "qemu-system-x86_64")
	hostreq.Need(t, "debootstrap")
	b := sharedTemplate(t, "debian", "amd64")
	g := startGuest(t, b.dir, b.boot, newOverlay(t, b.dir, b.boot), vmimage.HostnameParam+"=deb1")
	took, at := g.waitFor(vmimage.BootedMarker, 0)
	t.Logf("debian amd64: boot to %s in %v", vmimage.BootedMarker, took.Round(10*time.Millisecond))
	g.waitFor(agentMarker, 0)
	_, at = g.waitFor("# ", at)
	out, _ := g.run("grep -E '^(ID|VERSION_CODENAME)=' /etc/os-release; echo $BASH_VERSION; hostname; grep ' / ' /proc/mounts", at)
	t.Logf("guest says:\n%s", out)
	for _, want := range []string{"ID=debian\n", "VERSION_CODENAME=bookworm\n", "deb1\n", "/dev/vda / ext4 rw"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest output lacks %q", want)
		}
	}
	if !strings.Contains(out, "\n5.") {
		t.Errorf("the console shell is not bash 5: %q", out)
	}
	g.stdin.Write([]byte("poweroff\n"))
	if _, err := g.waitExit(30 * time.Second); err != nil {
		t.Errorf("poweroff: %v", err)
	}
}
