package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestBochsGuestBootsToItsConsole boots one busybox guest under Bochs, the
// pure emulator (its one boot takes minutes): from a BIOS template's disk,
// through Bochs's BIOS and the disk's GRUB, to busybox's shell on the
// serial console; exec through the agent on the second serial line, also
// after a daemon restart; its own name, DHCP and pings to and from a
// container through its e1000 on the network's bridge; stop and delete
// leave no Bochs process, no tap and no disk.
func TestBochsGuestBootsToItsConsole(t *testing.T) {
	requireRoot(t)
	// Minutes of one host CPU: it runs beside the other slow emulators.
	t.Parallel()
	// The BIOS template is built once, by the main daemon, which reaches
	// the package mirror; the test's daemon, in a network namespace of its
	// own (killed and restarted below), gets a copy.
	tmpl := biosTemplate(t)
	d := netnsDaemon(t)
	var check api.HostCheck
	jsonUnmarshal(d.Must(t, "host", "check", "--format", "json"), &check)
	for _, v := range check.Classes {
		if v.Class == "bochs" && !v.Works {
			t.Fatalf("host check: bochs does not work: %s", v.Reason)
		}
	}
	d.Must(t, "template", "build", "busybox")
	copyTemplate(t, env.main, d, tmpl+".vm.amd64")
	peer := launch(t, d, "busybox", "bochs-peer")
	began := time.Now()
	g := launch(t, d, tmpl, "e2e-bochs", "--type", "vm", "--engine", "bochs")
	t.Logf("launch under Bochs, to the agent: %s", time.Since(began).Round(time.Second))
	if g.State != api.StateRunning || g.Driver != "bochs" || g.Class != "emulation" || g.PID <= 0 {
		t.Fatalf("bochs guest: state %s driver %s class %s pid %d", g.State, g.Driver, g.Class, g.PID)
	}
	if cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(g.PID), "cmdline")); !strings.Contains(string(cmd), "bochs") {
		t.Errorf("the guest's process %d is not Bochs: %q", g.PID, cmd)
	}
	bochs, err := procutil.Identify(g.PID)
	if err != nil {
		t.Fatal(err)
	}
	// The guest outlives its daemon, and the next one adopts it.
	d.Kill()
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if again := info(t, d, g.Name); again.State != api.StateRunning || again.PID != g.PID || !bochs.Alive() {
		t.Fatalf("after a daemon restart the guest is %s with pid %d (was %d)", again.State, again.PID, g.PID)
	}
	// Its e1000 is on the network's bridge, through the tap Bochs made.
	addr := waitForAddress(t, d, g.Name)
	if !strings.HasPrefix(addr, "10.86.0.") {
		t.Errorf("the Bochs guest's address: %s", addr)
	}
	peerAddr := waitForAddress(t, d, peer.Name)
	if out, errOut, code := d.Run("exec", g.Name, "--", "busybox", "ping", "-c", "1", "-W", "10", peer.Name+".polyvisor"); code != 0 || !strings.Contains(out, peerAddr) {
		t.Errorf("ping %s.polyvisor from the Bochs guest: exit %d: %s%s", peer.Name, code, out, errOut)
	}
	// Its name, written into its own disk, is what it tells DHCP, and so
	// the name others reach it by.
	if name := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "hostname")); name != g.Name {
		t.Errorf("the Bochs guest's hostname is %q, want %q", name, g.Name)
	}
	if out, errOut, code := d.Run("exec", peer.Name, "--", "busybox", "ping", "-c", "1", "-W", "10", g.Name+".polyvisor"); code != 0 || !strings.Contains(out, addr) {
		t.Errorf("ping %s.polyvisor from a container: exit %d: %s%s", g.Name, code, out, errOut)
	}
	if u := info(t, d, g.Name).Usage; u == nil || u.NetworkReceiveBytes <= 0 || u.NetworkTransmitBytes <= 0 || u.CPUSeconds <= 0 || u.MemoryBytes <= 0 {
		t.Errorf("usage of the Bochs guest after DHCP and pings: %+v", u)
	}
	log := d.Must(t, "console", g.Name, "--log")
	for _, want := range []string{"Booting `polyvisor'", "Linux version", vmimage.BootedMarker, "/ # "} {
		if !strings.Contains(log, want) {
			t.Errorf("the console log lacks %q (GRUB, the kernel, sysinit, busybox's shell):\n%s", want, log)
		}
	}
	if m := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "uname", "-m")); m != "x86_64" {
		t.Errorf("uname -m in the Bochs guest: %q", m)
	}
	// IDE, not virtio: the initramfs found the root on /dev/sda.
	if mounts := d.Must(t, "exec", g.Name, "--", "cat", "/proc/mounts"); !strings.Contains(mounts, "/dev/sda2 / ") {
		t.Errorf("the Bochs guest's root is not /dev/sda2:\n%s", mounts)
	}
	began = time.Now()
	d.Must(t, "stop", g.Name)
	t.Logf("stop: %s", time.Since(began).Round(time.Millisecond))
	if st := info(t, d, g.Name).State; st != api.StateStopped {
		t.Errorf("after stop the guest is %s", st)
	}
	d.Must(t, "delete", g.Name)
	if bochs.Alive() {
		t.Errorf("Bochs (pid %d) outlived its guest's deletion", g.PID)
	}
	if nic := network.NICOf(g.Name, "polyvisor0"); exec.Command("ip", "-n", d.Netns, "link", "show", nic.HostIf).Run() == nil {
		t.Errorf("the tap %s of the deleted Bochs guest is left", nic.HostIf)
	}
	if _, err := os.Stat(filepath.Join(d.StateDir, "guests", g.Name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the guest's directory (its disk) is left after delete: %v", err)
	}
}

// biosTemplate builds the busybox VM template whose disk boots by itself
// through the BIOS (--firmware bios), on the main daemon, once per run:
// the Bochs guests of this test and of bench's both boot it.
func biosTemplate(t *testing.T) string {
	t.Helper()
	const name = "busybox-bios"
	bios.once.Do(func() {
		if _, _, code := env.main.Run("template", "show", name+".vm.amd64"); code == 0 {
			return
		}
		began := time.Now()
		out, errOut, code := env.main.Run("template", "build", "busybox", "--name", name, "--type", "vm", "--firmware", "bios")
		if code != 0 {
			bios.err = fmt.Errorf("template build busybox --firmware bios: %s%s", out, errOut)
			return
		}
		t.Logf("template build --firmware bios took %s", time.Since(began).Round(time.Millisecond))
	})
	if bios.err != nil {
		t.Fatal(bios.err)
	}
	return name
}

// bios is biosTemplate's once-per-run build.
var bios struct {
	once sync.Once
	err  error
}
