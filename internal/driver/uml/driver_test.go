package uml

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/drivertest"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestConformance runs the driver suite against Debian's real UML kernel,
// the real monitor and agent, and a busybox container template built for
// the occasion.
func TestConformance(t *testing.T) {
	testgate.RequireRoot(t, "UML guests need root (cgroups, the template's shifted tree)")
	if _, err := hostreq.Lookup(KernelProgram); err != nil {
		t.Skipf("no UML kernel: %v", err)
	}
	l, monitor := newHost(t)
	opts := Options{Layout: l, Monitor: monitor, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := New(opts)
	t.Cleanup(func() {
		d.Wait()
		os.RemoveAll(l.RunDir())
		os.RemoveAll(d.tmpRoot())
		if err := cgroup.Remove(l.CgroupParent()); err != nil {
			t.Error(err)
		}
	})
	drivertest.Run(t, drivertest.Fixture{
		Driver: d,
		Definition: func(name string) *guest.Definition {
			return &guest.Definition{
				SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeUML, Class: Class,
				Template: "busybox", Arch: "amd64", CPUs: 1, Memory: 128 << 20, Processes: 1024,
				Rootfs: guest.RootfsUBDCOW, CreatedAt: time.Now(), Status: guest.Status{State: api.StateStopped},
			}
		},
		GuestDir: l.GuestDir,
		Restart: func() driver.Driver {
			// The old daemon's agent connections die with it.
			d.agents.DropAll()
			return New(opts)
		},
		HostObjects: func(name string) []string {
			return []string{l.GuestRunDir(name), drivertest.CgroupDir(l.GuestCgroup(name)), d.tmpDir(&guest.Definition{Name: name})}
		},
	})
}

// newHost builds the monitor and the amd64 agent (only those: the rest of
// the binaries are not this driver's), lays out a state dir and builds
// the busybox container template in it.
func newHost(t *testing.T) (layout.Layout, string) {
	t.Helper()
	tmp := t.TempDir()
	if err := testenv.OpenToSearch(tmp); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "bin")
	for out, pkg := range map[string]string{"polyvisor-monitor": "./cmd/polyvisor-monitor", template.AgentName("amd64"): "./cmd/polyvisor-agent"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=amd64")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, msg)
		}
	}
	l := layout.New(filepath.Join(tmp, "state"))
	for _, dir := range []string{l.StateDir, l.GuestsDir(), l.TemplatesDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	store := template.Store{Dir: l.TemplatesDir(), AgentDir: bin}
	if _, err := store.Build(context.Background(), template.Request{Source: "busybox", Type: template.TypeContainer}, func(string, int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	return l, filepath.Join(bin, "polyvisor-monitor")
}

func TestCommandLine(t *testing.T) {
	nic := network.NICOf("g1", "pvnet")
	got := strings.Join(commandLine(bootSpec{
		Kernel: "/usr/bin/linux.uml", TmpDir: "/dev/shm/x/g1", RunDir: "/run/x/g1", COW: "/s/g1/disks/root.cow", Image: "/s/t/uml.ext4",
		Hostname: "g1", Memory: 256 << 20, NICs: []network.NIC{nic},
	}), " ")
	for _, want := range []string{
		"/usr/bin/env TMPDIR=/dev/shm/x/g1 /usr/bin/linux.uml ",
		" mem=256M ", " ubd0=/s/g1/disks/root.cow,/s/t/uml.ext4 root=/dev/ubda ",
		" con0=fd:0,fd:1 con=null ssl=null ssl1=tty:{agent-pty} ",
		" uml_dir=/run/x/g1 umid=uml ",
		" eth0=tuntap," + nic.HostIf + "," + nic.MAC.String(),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("command line %q lacks %q", got, want)
		}
	}
}

func TestInittabRunsTheAgentOnItsSerialLine(t *testing.T) {
	tab := inittab("/bin/sh")
	for _, want := range []string{"::respawn:/usr/sbin/polyvisor-agent --port /dev/ttyS1\n", "tty0::respawn:-/bin/sh\n", "::sysinit:/usr/lib/polyvisor/sysinit\n"} {
		if !strings.Contains(tab, want) {
			t.Errorf("inittab lacks %q:\n%s", want, tab)
		}
	}
}

func TestDefineRefusesWhatUMLHasNot(t *testing.T) {
	d := New(Options{})
	for _, req := range []api.GuestCreate{{Copy: true}, {Privileged: true}, {Disk: "10GiB"}, {IDMap: "shared"}, {Arch: "arm64"}} {
		def := &guest.Definition{}
		if err := d.Define(def, req); err == nil {
			t.Errorf("Define(%+v) accepted", req)
		}
	}
	def := &guest.Definition{}
	if err := d.Define(def, api.GuestCreate{}); err != nil || def.Rootfs != guest.RootfsUBDCOW {
		t.Fatalf("Define: %v, rootfs %q", err, def.Rootfs)
	}
	if err := driver.CheckCapabilities(d); err != nil {
		t.Fatal(err)
	}
}
