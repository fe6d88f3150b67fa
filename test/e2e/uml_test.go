package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// umlKernel is Debian's User-Mode Linux kernel.
const umlKernel = "/usr/bin/linux.uml"

// TestUMLGuests runs a busybox and a Debian guest under User-Mode Linux in
// a network namespace of the test's own: each boots to its agent, runs
// the UML kernel (not the host's), gets a DHCP address on polyvisor's
// bridge and pings a container there; both survive a daemon kill; delete
// leaves no UML process, no tap and no COW file.
func TestUMLGuests(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat(umlKernel); err != nil {
		t.Skipf("no User-Mode Linux kernel (%v): install user-mode-linux", err)
	}
	modules, err := os.ReadDir("/usr/lib/uml/modules")
	if err != nil || len(modules) != 1 {
		t.Fatalf("the UML kernel's version from /usr/lib/uml/modules: %v %v", modules, err)
	}
	umlVersion := modules[0].Name()
	d := netnsDaemon(t)
	d.Must(t, "template", "build", "busybox")
	// The namespace's daemon cannot reach a mirror: it gets the main
	// daemon's Debian template.
	copyTemplate(t, env.main, d, "debian")

	var check api.HostCheck
	jsonUnmarshal(d.Must(t, "host", "check", "--format", "json"), &check)
	found := false
	for _, v := range check.Classes {
		if v.Class == "uml" {
			found = true
			t.Logf("host check: uml: works %v: %s (%v)", v.Works, v.Reason, v.Details)
			if !v.Works {
				t.Fatalf("host check: uml does not work: %s", v.Reason)
			}
		}
	}
	if !found {
		t.Fatal("host check lists no uml class")
	}

	// create builds the template's image (once), start boots to the agent.
	guests := map[string]string{"uml-bb": "busybox", "uml-deb": "debian"}
	for _, name := range []string{"uml-bb", "uml-deb"} {
		began := time.Now()
		d.Must(t, "create", guests[name], name, "--type", "uml")
		t.Cleanup(func() { d.Run("delete", "--force", name) })
		created := time.Since(began)
		began = time.Now()
		d.Must(t, "start", name)
		t.Logf("%s (%s): create, with the template's image built, %s; start to the agent's answer %s",
			name, guests[name], created.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	}
	container := launch(t, d, "busybox", "uml-peer")
	peerAddr := waitForAddress(t, d, container.Name)

	procs := map[string][]procutil.Identity{}
	kernels := map[string]procutil.Identity{}
	for _, name := range []string{"uml-bb", "uml-deb"} {
		g := info(t, d, name)
		if g.State != api.StateRunning || g.Type != "uml" || g.Class != "paravirtualization" || g.PID <= 0 {
			t.Fatalf("%s: state %s type %s class %s pid %d", name, g.State, g.Type, g.Class, g.PID)
		}
		if cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(g.PID), "cmdline")); !bytes.Contains(cmd, []byte(umlKernel)) {
			t.Errorf("%s's process %d is not the UML kernel: %q", name, g.PID, cmd)
		}
		if kernels[name], err = procutil.Identify(g.PID); err != nil {
			t.Fatal(err)
		}
		procs[name] = umlProcesses(t, cowOf(d, name))
		if len(procs[name]) < 2 {
			t.Errorf("%s: %d UML processes found, want the kernel and its helpers", name, len(procs[name]))
		}
		if r := strings.TrimSpace(d.Must(t, "exec", name, "--", "uname", "-r")); r != umlVersion {
			t.Errorf("%s: uname -r %q, want the UML kernel's %q", name, r, umlVersion)
		}
		if cpu := d.Must(t, "exec", name, "--", "cat", "/proc/cpuinfo"); !strings.Contains(cpu, "User Mode Linux") {
			t.Errorf("%s: /proc/cpuinfo does not say User Mode Linux:\n%s", name, cpu)
		}
		if mounts := d.Must(t, "exec", name, "--", "cat", "/proc/mounts"); !strings.Contains(mounts, "/dev/root / ext4") && !strings.Contains(mounts, "/dev/ubda / ext4") {
			t.Errorf("%s: its root is not the ext4 ubd disk:\n%s", name, mounts)
		}
		// Its limits: mem= inside, and a cgroup around the kernel outside
		// (the guest's 256 MiB and the kernel's overhead).
		var memKiB int64
		fmt.Sscanf(d.Must(t, "exec", name, "--", "head", "-n1", "/proc/meminfo"), "MemTotal: %d kB", &memKiB)
		if memKiB < 200<<10 || memKiB > 256<<10 {
			t.Errorf("%s: MemTotal %d KiB, want about the guest's 256 MiB", name, memKiB)
		}
		if limit := cgroupMemoryLimit(t, layout.New(d.StateDir).GuestCgroup(name)); limit <= 256<<20 || limit > 512<<20 {
			t.Errorf("%s: its cgroup's memory limit is %d bytes, want 256 MiB and the kernel's overhead", name, limit)
		}
		addr := waitForAddress(t, d, name)
		if !strings.HasPrefix(addr, "10.86.0.") {
			t.Errorf("%s: address %s, not on polyvisor0", name, addr)
		}
		if out, errOut, code := d.Run("exec", name, "--", "busybox", "ping", "-c", "1", "-W", "5", peerAddr); code != 0 {
			t.Errorf("%s: ping the container at %s: exit %d: %s%s", name, peerAddr, code, out, errOut)
		}
		execLargeInput(t, d, name)
	}
	if log := d.Must(t, "console", "uml-bb", "--log"); !strings.Contains(log, "Linux version "+umlVersion) || !strings.Contains(log, "/ # ") {
		t.Errorf("the console log lacks the UML kernel's banner or the shell's prompt:\n%s", log)
	}

	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(line, "built uml root image") {
			t.Log(line)
		}
	}

	// Guests outlive the daemon, and exec reaches them again after it.
	d.Kill()
	for name, kernel := range kernels {
		if !kernel.Alive() {
			t.Fatalf("killing the daemon killed %s's kernel", name)
		}
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"uml-bb", "uml-deb"} {
		if r := strings.TrimSpace(d.Must(t, "exec", name, "--", "uname", "-r")); r != umlVersion {
			t.Errorf("%s after a daemon restart: uname -r %q", name, r)
		}
	}

	// A clean stop through the agent; delete leaves nothing.
	began := time.Now()
	d.Must(t, "stop", "uml-deb")
	t.Logf("stop uml-deb (poweroff through the agent): %s", time.Since(began).Round(time.Millisecond))
	for _, name := range []string{"uml-bb", "uml-deb"} {
		cow, nic := cowOf(d, name), network.NICOf(name, "polyvisor0")
		d.Must(t, "delete", "--force", name)
		for _, p := range procs[name] {
			if p.Alive() {
				t.Errorf("%s: UML process %d outlived the delete", name, p.PID)
			}
		}
		if left := umlProcesses(t, cow); len(left) > 0 {
			t.Errorf("%s: UML processes left after delete: %v", name, left)
		}
		if err := exec.Command("ip", "-n", d.Netns, "link", "show", nic.HostIf).Run(); err == nil {
			t.Errorf("%s: its tap %s is left after delete", name, nic.HostIf)
		}
		if _, err := os.Stat(cow); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: its COW file is left after delete: %v", name, err)
		}
	}
}

// execLargeInput sends 2 MiB of random bytes to a command in a UML guest
// and checks that they arrive whole and that the agent's serial line
// still carries the execs after it. UML's line driver stops reading its
// host side for good once the guest throttles the line's input (past
// about 4 KB unread), which only the host's pacing of the line (the
// client's LinkWindow) prevents.
func execLargeInput(t *testing.T, d *testenv.Daemon, name string) {
	t.Helper()
	input := make([]byte, 2<<20)
	if _, err := rand.Read(input); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", md5.Sum(input))
	// A stalled line hangs the exec: bounded well under the CLI's own
	// limit, so that it fails soon and says so.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := d.Command(ctx, "exec", name, "--", "sh", "-c", "cat > /tmp/x; md5sum /tmp/x; rm /tmp/x")
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(input), &out, &errOut
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil || !strings.HasPrefix(out.String(), want+" ") {
		t.Fatalf("%s: 2 MiB of input through the agent: %v (after %s), md5sum %q, want %s: %s", name, err, took.Round(time.Millisecond), out.String(), want, errOut.String())
	}
	t.Logf("%s: 2 MiB of input through the agent's serial line in %s (%.0f KiB/s)", name, took.Round(time.Millisecond), float64(len(input))/1024/took.Seconds())
	for i := 0; i < 2; i++ {
		if got := strings.TrimSpace(d.Must(t, "exec", name, "--", "echo", "alive")); got != "alive" {
			t.Fatalf("%s: exec %d after the large input printed %q", name, i+1, got)
		}
	}
}

// cgroupMemoryLimit reads the memory limit of the cgroup at path.
func cgroupMemoryLimit(t *testing.T, path string) int64 {
	t.Helper()
	for _, file := range []string{filepath.Join("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes"), filepath.Join("/sys/fs/cgroup", path, "memory.max")} {
		if data, err := os.ReadFile(file); err == nil {
			n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			return n
		}
	}
	t.Fatalf("no memory limit file for cgroup %s", path)
	return 0
}

// cowOf is the path of a UML guest's COW file.
func cowOf(d *testenv.Daemon, name string) string {
	return filepath.Join(layout.New(d.StateDir).GuestDir(name), "disks", "root.cow")
}

// umlProcesses lists the live (not zombie) host processes of the UML
// kernel whose root disk is cow: the kernel and the helpers it forks,
// which share its command line.
func umlProcesses(t *testing.T, cow string) []procutil.Identity {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []procutil.Identity
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte("ubd0="+cow+",")) {
			continue
		}
		if id, err := procutil.Identify(pid); err == nil && id.Alive() {
			found = append(found, id)
		}
	}
	return found
}
