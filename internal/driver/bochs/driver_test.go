package bochs

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestCapabilitiesAgreeWithInterfaces(t *testing.T) {
	if err := driver.CheckCapabilities(New(Options{})); err != nil {
		t.Error(err)
	}
}

func TestBochsrcNamesEveryDeviceAndTheConsole(t *testing.T) {
	rc := machine{MemoryMiB: 256, CPUs: 2, Disk: "/g/disks/root.raw", Log: "/run/g/bochs.log"}.bochsrc()
	for _, want := range []string{
		"megs: 256\n", "cpu: count=2, ips=", "romimage: file=" + bochsBIOS + "\n", "vgaromimage: file=" + vgaBIOS + "\n",
		`display_library: rfb, options="timeout=0"` + "\n", "boot: disk\n", "log: /run/g/bochs.log\n",
		"ata0-master: type=disk, path=/g/disks/root.raw, mode=flat\n", "com1: enabled=1, mode=term, dev=/proc/self/fd/3\n",
		"speaker: enabled=0\n", "sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n",
	} {
		if !strings.Contains(rc, want) {
			t.Errorf("bochsrc lacks %q:\n%s", want, rc)
		}
	}
	if strings.Contains(rc, "com2") {
		t.Errorf("com2 is given on the command line, where the monitor fills in its pty:\n%s", rc)
	}
	nic := network.NICOf("g", "lan")
	if rc := (machine{MemoryMiB: 16, CPUs: 1, NIC: nicLine(nic)}).bochsrc(); !strings.Contains(rc, "e1000: enabled=1, mac="+nic.MAC.String()+", ethmod=tuntap, ethdev=/dev/net/tun:"+nic.HostIf+"\n") {
		t.Errorf("bochsrc of a guest on a network lacks its e1000 on the NIC's tap:\n%s", rc)
	}
	if rc := (machine{MemoryMiB: 16, CPUs: 1, NoDisk: true}).bochsrc(); strings.Contains(rc, "ata0-master") || strings.Contains(rc, "com1") {
		t.Errorf("the canary's machine has a disk or a console:\n%s", rc)
	}
}

func TestCommandRunsBochsInItsOwnNetworkNamespace(t *testing.T) {
	argv := command("/usr/bin/unshare", "/bin/sh", "/usr/bin/bochs", "/run/pv/g", true)
	line := strings.Join(argv, " ")
	if !strings.HasPrefix(line, "/usr/bin/unshare --net -- /bin/sh -c ") {
		t.Errorf("command %q does not start Bochs in a network namespace of its own", line)
	}
	if !strings.Contains(line, "-unlock -f /run/pv/g/bochsrc -rc /run/pv/g/debugger.rc") {
		t.Errorf("command %q does not pass the bochsrc and the debugger's commands", line)
	}
	if last := argv[len(argv)-1]; last != "com2: enabled=1, mode=term, dev="+monitor.AgentPtyArg {
		t.Errorf("last argument %q, want com2 on the agent's pty", last)
	}
	if argv := command("u", "s", "b", "/r", false); strings.Contains(strings.Join(argv, " "), "com2") {
		t.Errorf("a guest without agent line gets com2: %q", argv)
	}
}

func TestReadBoot(t *testing.T) {
	for _, c := range []struct {
		log  string
		want bootState
	}{
		{"[    1.0] Linux version 6.1\r\n", bootNotYet},
		{"[    1.0] Run /init\r\n# ", bootNotYet}, // a rescue shell is no boot
		{vmimage.BootedMarker + "\r\n\r\nBusyBox v1.35.0 built-in shell (ash)\r\n", bootSysinit},
		{vmimage.BootedMarker + "\r\nBusyBox\r\n/ # \x1b[6n", bootPrompt},
		{vmimage.BootedMarker + "\r\n/ # \x1b[6ntime=... level=WARN msg=\"agent\"\r\n", bootSysinit},
		{vmimage.BootedMarker + "\r\n/ # \r\n[ 30.1] late driver message\r\n", bootPrompt},
		{vmimage.BootedMarker + "\r\nroot@bochs:~# ", bootPrompt},
	} {
		if got := readBoot([]byte(c.log)); got != c.want {
			t.Errorf("readBoot(%q) = %d, want %d", c.log, got, c.want)
		}
	}
}

func TestBootTimeoutGrowsWithTheCPUs(t *testing.T) {
	if got := bootTimeout(DefaultBootTimeout, 2); got != 2*DefaultBootTimeout {
		t.Errorf("bootTimeout(2 CPUs) = %s", got)
	}
	if got := bootTimeout(time.Minute, 0); got != time.Minute {
		t.Errorf("bootTimeout(0 CPUs) = %s", got)
	}
}

func TestExitMessage(t *testing.T) {
	out := "=====\nBochs is exiting with the following message:\n[BIOS  ] No bootable device.\n=====\n(0).[151105585] ...\n"
	if got := exitMessage(out); got != "[BIOS  ] No bootable device." {
		t.Errorf("exitMessage = %q", got)
	}
	if got := exitMessage("00000i[CPU0  ] fine\n"); got != "" {
		t.Errorf("exitMessage of a log without panic = %q", got)
	}
}

// TestDefineRefuses checks the one-line refusals of what Bochs cannot do,
// against a template store holding a direct-boot and a UEFI template.
func TestDefineRefuses(t *testing.T) {
	l := layout.New(t.TempDir())
	d := New(Options{Layout: l})
	writeTemplate(t, l, "direct", "")
	writeTemplate(t, l, "uefi", vmimage.FirmwareUEFI)
	writeTemplate(t, l, "bios", vmimage.FirmwareBIOS)
	writeTemplate(t, l, "twodisks", vmimage.FirmwareBIOS+"\n  dataDisks: [data1.qcow2]")
	for _, c := range []struct {
		def  guest.Definition
		req  api.GuestCreate
		want string
	}{
		{guest.Definition{Template: "direct", CPUs: 1, Memory: 256 << 20}, api.GuestCreate{}, "template build busybox --name direct-bios --type vm --firmware bios"},
		{guest.Definition{Template: "uefi", CPUs: 1, Memory: 256 << 20}, api.GuestCreate{}, "boots by UEFI"},
		{guest.Definition{Template: "twodisks", CPUs: 1, Memory: 256 << 20}, api.GuestCreate{}, "1 data disk(s) besides its boot disk"},
		{guest.Definition{Template: "bios", Arch: "arm64", CPUs: 1, Memory: 256 << 20}, api.GuestCreate{}, "x86 PCs only"},
		{guest.Definition{Template: "bios", CPUs: 8, Memory: 256 << 20}, api.GuestCreate{}, "at most 4"},
		{guest.Definition{Template: "bios", CPUs: 1, Memory: 256<<20 + 1}, api.GuestCreate{}, "whole MiB"},
		{guest.Definition{Template: "bios", CPUs: 1, Memory: 4 << 30}, api.GuestCreate{}, "up to 2GiB"},
		{guest.Definition{Template: "bios", CPUs: 1, Memory: 256 << 20, Networks: []string{"lan", "wan"}}, api.GuestCreate{Networks: []string{"lan", "wan"}}, "joins one network"},
	} {
		def := c.def
		err := d.Define(&def, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Define(%+v) = %v, want one line with %q", c.def, err, c.want)
		}
	}
	def := guest.Definition{Template: "bios", CPUs: 1, Memory: 256 << 20, Networks: []string{"default"}}
	if err := d.Define(&def, api.GuestCreate{}); err != nil || def.Rootfs != guest.RootfsRaw || len(def.Networks) != 1 {
		t.Errorf("Define of a BIOS template's guest: %v, rootfs %q, networks %v; want raw, on its network", err, def.Rootfs, def.Networks)
	}
}

// writeTemplate writes a VM template's record as template build does.
func writeTemplate(t *testing.T, l layout.Layout, name, firmware string) {
	t.Helper()
	dir := filepath.Join(l.TemplatesDir(), name+".vm.amd64")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := "id: " + name + ".vm.amd64\nname: " + name + "\ntype: vm\narch: amd64\nboot:\n  disk: disk.qcow2\n  machine: q35\n"
	if firmware != "" {
		rec += "  firmware: " + firmware + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "template.yaml"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckRunsTheCanary runs the real canary: Bochs starts headless in a
// network namespace of its own and its BIOS finds no bootable device.
func TestCheckRunsTheCanary(t *testing.T) {
	testgate.RequireRoot(t, "the canary runs Bochs in a network namespace of its own")
	for _, name := range []string{"bochs-bin", bochsBIOS, vgaBIOS, "unshare"} {
		hostreq.Need(t, name)
	}
	l := layout.New(t.TempDir())
	t.Cleanup(func() { os.RemoveAll(l.RunDir()) })
	d := New(Options{Layout: l})
	v := d.Check(context.Background())
	if !v.Works || v.Class != Class || v.Details["canary"] == "" {
		t.Fatalf("Check() = %+v, want a working canary", v)
	}
	t.Logf("canary: %s (%s)", v.Details["canary"], v.Reason)
	if again := d.Check(context.Background()); again.Details["canary"] != v.Details["canary"] {
		t.Errorf("the second check ran the canary again: %s, then %s", v.Details["canary"], again.Details["canary"])
	}
}

// TestNameDiskWritesTheHostname names a copy of a real BIOS template's
// disk layout: an MBR whose Linux partition holds an ext4 root.
func TestNameDiskWritesTheHostname(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		hostreq.Need(t, name)
	}
	disk := filepath.Join(t.TempDir(), "root.raw")
	const offset = 33 << 20
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, offset+16<<20); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir() // the template's tree, named as its builder left it
	if err := os.Mkdir(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("template\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, "-E", "offset="+strconv.Itoa(offset), disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	if err := nameDisk(context.Background(), disk, "g1"); err == nil {
		t.Fatal("nameDisk of a disk without an MBR succeeded")
	}
	mbr := make([]byte, sectorSize)
	mbr[510], mbr[511] = 0x55, 0xaa
	mbr[mbrTable+mbrEntry+4] = partTypeRoot // the second entry, as in our templates
	binary.LittleEndian.PutUint32(mbr[mbrTable+mbrEntry+8:], offset/sectorSize)
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(mbr, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} { // the second replaces the first
		if err := nameDisk(context.Background(), disk, name); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("debugfs", "-R", "cat /etc/hostname", disk+"?offset="+strconv.Itoa(offset)).Output()
	if err != nil || string(out) != "second\n" {
		t.Errorf("/etc/hostname on the disk: %q, %v", out, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(disk), ".hostname*")); len(left) > 0 {
		t.Errorf("nameDisk left %v", left)
	}
}

// TestExecWithoutAnAgentIsRefusedInOneLine: a running guest whose agent
// does not answer on com2 is refused at once, naming the console instead.
func TestExecWithoutAnAgentIsRefusedInOneLine(t *testing.T) {
	l := layout.New(t.TempDir())
	d := New(Options{Layout: l})
	self, err := procutil.Identify(os.Getpid()) // a live process stands for Bochs
	if err != nil {
		t.Fatal(err)
	}
	def := &guest.Definition{Name: "g", Status: guest.Status{InitPID: self.PID, InitStart: self.Start}}
	_, err = d.Exec(context.Background(), def, api.ExecRequest{Command: []string{"true"}}, driver.Stdio{})
	if !errors.Is(err, api.ErrNotAvailable) || !strings.Contains(err.Error(), "no agent channel") ||
		!strings.Contains(err.Error(), "polyvisor console g") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Exec without an agent: %v", err)
	}
	t.Log(err)
}
