package libvirt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/polyvisor/polyvisor/internal/debpkg"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/importer"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// testPrefix starts the test's domain names, which name their cgroups.
const testPrefix = "pvlvt"

// The QEMU domain's NICs: user-mode (no host link), two, to see that
// every MAC survives an export and import.
var testMACs = []string{"52:54:00:4c:56:01", "52:54:00:4c:56:02"}

// qemuDomainXML is a TCG (type qemu: this host's nested KVM does not boot
// Linux) q35 guest that boots its qcow2 disk by SeaBIOS and GRUB, its
// serial port the console.
func qemuDomainXML(name, disk string) string {
	var nics string
	for _, mac := range testMACs {
		nics += fmt.Sprintf("<interface type='user'><mac address='%s'/><model type='virtio'/></interface>", mac)
	}
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    %s
    <serial type='pty'/><console type='pty'/>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>`, name, disk, nics)
}

// lxcDomainXML is a container of a busybox tree whose init prints a line
// every second, echoes what is typed on its console (a background reader
// of the console, saved as fd 3: a background job's stdin is /dev/null)
// and exits on SIGTERM, libvirt's shutdown of an LXC domain.
func lxcDomainXML(name, rootfs string) string {
	return fmt.Sprintf(`<domain type='lxc'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>exe</type><init>/bin/sh</init><initarg>-c</initarg><initarg>trap 'exit 0' TERM; exec 3&lt;&amp;0; (while read l; do echo "got:$l"; done) &lt;&amp;3 &amp; while :; do echo hello-lxc; sleep 1; done</initarg></os>
  <devices>
    <filesystem type='mount'><source dir='%s'/><target dir='/'/></filesystem>
    <console type='pty'/>
  </devices>
</domain>`, name, rootfs)
}

// biosDisk builds polyvisor's busybox VM image with a BIOS bootloader in
// it (vmimage, firmware bios) and returns its qcow2 disk.
func biosDisk(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := template.BuildBusyboxArch(ctx, rootfs, "amd64", debpkg.DefaultCacheDir, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "vm")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	boot, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: rootfs, Arch: "amd64", OutDir: out, CacheDir: debpkg.DefaultCacheDir, Firmware: vmimage.FirmwareBIOS}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("busybox BIOS VM image built in %s", time.Since(began).Round(time.Millisecond))
	return filepath.Join(out, boot.Disk)
}

// busyboxTree is a container root: the host's static busybox and its
// applets' links.
func busyboxTree(t *testing.T, dir string) {
	t.Helper()
	bb := hostreq.Need(t, "busybox")
	for _, sub := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// readUntil reads a console until its output holds want, or fails after
// timeout; it returns what it read.
func readUntil(t *testing.T, r io.Reader, want string, timeout time.Duration) string {
	t.Helper()
	type chunk struct {
		b   []byte
		err error
	}
	var got bytes.Buffer
	deadline := time.After(timeout)
	for {
		ch := make(chan chunk, 1)
		go func() {
			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			ch <- chunk{buf[:n], err}
		}()
		select {
		case c := <-ch:
			got.Write(c.b)
			if strings.Contains(got.String(), want) {
				return got.String()
			}
			if c.err != nil {
				t.Fatalf("console ended (%v) before %q; it gave %q", c.err, want, lastLines(got.String(), 5))
			}
		case <-deadline:
			t.Fatalf("console: no %q in %s; it gave %q", want, timeout, lastLines(got.String(), 5))
		}
	}
}

// hostLinks are the host's links libvirt could have made.
func hostLinks() []string {
	var out []string
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if n := l.Name(); strings.HasPrefix(n, "virbr") || strings.HasPrefix(n, "vnet") || strings.HasPrefix(n, "macvtap") {
			out = append(out, n)
		}
	}
	return out
}

// stepLimit bounds one step: a step that hangs fails the test while its
// cleanups (which stop libvirtd and its guests) can still run, which the
// go test timeout's panic would not let them.
const stepLimit = 4 * time.Minute

// step runs one timed step of a test.
func step(t *testing.T, name string, f func() error) {
	t.Helper()
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	case <-time.After(stepLimit):
		t.Fatalf("%s: no result in %s", name, stepLimit)
	}
	t.Logf("%s: %s", name, time.Since(began).Round(time.Millisecond))
}

// define adds a domain through the host's own connection.
func define(t *testing.T, ctx context.Context, h *Host, xml string) {
	t.Helper()
	err := h.c.call(ctx, "define", callTimeout, func(l *golibvirt.Libvirt) error {
		_, err := l.DomainDefineXML(xml)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func openURL(t *testing.T, ctx context.Context, uri string) *Host {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Open(ctx, vendorhost.Credentials{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h.(*Host)
}

// TestLibvirtHostQEMU drives a TCG domain of a real, private libvirtd
// through Open: list, resources, snapshots, start, console, stop, the
// refusals of a running domain, export (file copy and storage volume
// download), import of the export by polyvisor's importer, and delete
// that keeps files outside pools and removes pool volumes.
func TestLibvirtHostQEMU(t *testing.T) {
	testgate.RequireRoot(t, "needs root: libvirtd runs QEMU as root in namespaces of its own")
	for _, tool := range []string{"libvirtd", "unshare", "mount", "mkdir", "sh", "cp", "qemu-system-x86_64", "qemu-img", "mke2fs", "dpkg-deb", "xz"} {
		hostreq.Need(t, tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	linksBefore := hostLinks()
	base := biosDisk(t, ctx)
	d := startTestDaemon(t, ctx)
	images := filepath.Join(d.dir, "images")
	if err := os.Mkdir(images, 0o700); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(images, "vm.qcow2")
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", base, disk).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	var h *Host
	step(t, "Open (libvirtd until it answers)", func() error {
		h = openURL(t, ctx, "qemu+unix:///system?socket="+d.socket())
		return nil
	})
	vm := testPrefix + "-vm"
	define(t, ctx, h, qemuDomainXML(vm, disk))

	var guests []vendorhost.Guest
	step(t, "List", func() (err error) { guests, err = h.List(ctx); return err })
	if len(guests) != 1 {
		t.Fatalf("list: %+v, want the one domain", guests)
	}
	g := guests[0]
	if g.Name != vm || g.State != vendorhost.StateStopped || g.CPUs != 1 || g.MemoryMiB != 256 || g.Firmware != "bios" || g.Detail != "qemu" || g.OS != "hvm" ||
		len(g.Disks) != 1 || g.Disks[0].Path != disk || g.Disks[0].Format != "qcow2" || len(g.NICs) != 2 || g.NICs[0].MAC != testMACs[0] || g.NICs[1].MAC != testMACs[1] {
		t.Errorf("guest %+v", g)
	}
	if _, err := h.Get(ctx, "no-such-domain"); !errors.Is(err, vendorhost.ErrNotFound) || !strings.Contains(err.Error(), "no-such-domain") {
		t.Errorf("get of an unknown domain: %v, want ErrNotFound naming it", err)
	}
	if err := h.Start(ctx, "no-such-domain"); !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("start of an unknown domain: %v", err)
	}

	step(t, "SetResources (stopped: 2 vCPUs, 384 MiB, past the maximums)", func() error { return h.SetResources(ctx, vm, 2, 384) })
	if g, err := h.Get(ctx, vm); err != nil || g.CPUs != 2 || g.MemoryMiB != 384 {
		t.Errorf("after SetResources: %+v, %v", g, err)
	}

	// Snapshots of the stopped domain: internal qcow2 snapshots.
	step(t, "CreateSnapshot s1", func() error { return h.CreateSnapshot(ctx, vm, "s1") })
	step(t, "CreateSnapshot s2", func() error { return h.CreateSnapshot(ctx, vm, "s2") })
	if err := h.CreateSnapshot(ctx, vm, "s1"); !errors.Is(err, vendorhost.ErrConflict) {
		t.Errorf("a second s1: %v, want ErrConflict", err)
	}
	snaps, err := h.Snapshots(ctx, vm)
	if err != nil || len(snaps) != 2 || snaps[0].Name != "s1" || snaps[1].Name != "s2" || snaps[1].Parent != "s1" || !snaps[1].Current || snaps[0].Current || snaps[0].CreatedAt.IsZero() {
		t.Errorf("snapshots %+v, %v: want s1, then s2 (current, child of s1)", snaps, err)
	}
	step(t, "RevertSnapshot s1", func() error { return h.RevertSnapshot(ctx, vm, "s1") })
	if snaps, _ := h.Snapshots(ctx, vm); len(snaps) != 2 || !snaps[0].Current {
		t.Errorf("after revert: %+v, want s1 current", snaps)
	}
	step(t, "DeleteSnapshot s1 (its child stays)", func() error { return h.DeleteSnapshot(ctx, vm, "s1") })
	if snaps, _ := h.Snapshots(ctx, vm); len(snaps) != 1 || snaps[0].Name != "s2" || snaps[0].Parent != "" {
		t.Errorf("after deleting s1: %+v, want s2 alone, re-parented", snaps)
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", "snapshot", "-l", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "s2") || strings.Contains(string(out), "s1") {
		t.Errorf("qemu-img snapshot -l: %v: %s: want s2 alone in the disk", err, out)
	}
	if err := h.DeleteSnapshot(ctx, vm, "s1"); !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("delete a deleted snapshot: %v, want ErrNotFound", err)
	}
	step(t, "DeleteSnapshot s2", func() error { return h.DeleteSnapshot(ctx, vm, "s2") })

	step(t, "Start", func() error { return h.Start(ctx, vm) })
	if g, err := h.Get(ctx, vm); err != nil || g.State != vendorhost.StateRunning {
		t.Errorf("after start: %+v, %v", g, err)
	}
	var con io.ReadWriteCloser
	step(t, "Console", func() (err error) { con, err = h.Console(ctx, vm); return err })
	began := time.Now()
	readUntil(t, con, "Linux version", 3*time.Minute)
	t.Logf("console: the kernel's banner %s after the console opened", time.Since(began).Round(time.Millisecond))
	if _, err := h.Console(ctx, vm); err == nil {
		t.Errorf("a second console while one is open: no error")
	}
	step(t, "Console Close", con.Close)
	// A running domain's snapshot holds its memory too.
	step(t, "CreateSnapshot of the running domain", func() error { return h.CreateSnapshot(ctx, vm, "live") })
	if snaps, err := h.Snapshots(ctx, vm); err != nil || len(snaps) != 1 || snaps[0].Name != "live" || !snaps[0].Current {
		t.Errorf("snapshots of the running domain: %+v, %v", snaps, err)
	}
	step(t, "DeleteSnapshot of the running domain", func() error { return h.DeleteSnapshot(ctx, vm, "live") })

	// What a running domain refuses.
	if _, err := h.Export(ctx, vm, t.TempDir(), nil); !errors.Is(err, vendorhost.ErrConflict) || !strings.Contains(err.Error(), "stop it") {
		t.Errorf("export of a running domain: %v, want ErrConflict saying to stop it", err)
	}
	if err := h.Delete(ctx, vm); !errors.Is(err, vendorhost.ErrConflict) {
		t.Errorf("delete of a running domain: %v, want ErrConflict", err)
	}
	if err := h.SetResources(ctx, vm, 0, 4096); !errors.Is(err, vendorhost.ErrConflict) || !strings.Contains(err.Error(), "stop it") {
		t.Errorf("raising a running domain's memory past its maximum: %v, want ErrConflict", err)
	}
	step(t, "Restart", func() error { return h.Restart(ctx, vm) })
	// The busybox guest has no ACPI daemon: Stop powers it off after the
	// timeout.
	step(t, "Stop (ACPI, then power off after 5 s)", func() error { return h.Stop(ctx, vm, 5*time.Second, false) })
	if g, err := h.Get(ctx, vm); err != nil || g.State != vendorhost.StateStopped {
		t.Errorf("after stop: %+v, %v", g, err)
	}

	// Export of a file outside every pool: read directly (local host).
	sum := fileSum(t, disk)
	out1 := t.TempDir()
	var exp vendorhost.Exported
	step(t, "Export (file copy)", func() (err error) { exp, err = h.Export(ctx, vm, out1, nil); return err })
	checkExport(t, exp, out1, sum, vm)

	// The same disk as a pool volume: downloaded through libvirt.
	err = h.c.call(ctx, "pool", callTimeout, func(l *golibvirt.Libvirt) error {
		_, err := l.StoragePoolCreateXML(fmt.Sprintf("<pool type='dir'><name>%s-pool</name><target><path>%s</path></target></pool>", testPrefix, images), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out2 := t.TempDir()
	var phases []string
	step(t, "Export (storage volume download)", func() (err error) {
		exp, err = h.Export(ctx, vm, out2, func(phase string, done, total int64) {
			if !slices.Contains(phases, phase) {
				phases = append(phases, phase)
			}
		})
		return err
	})
	checkExport(t, exp, out2, sum, vm)
	if len(phases) != 1 || !strings.HasPrefix(phases[0], "download vda") {
		t.Errorf("progress phases %q, want the volume's download", phases)
	}

	// polyvisor's importer reads the export.
	store := template.Store{Dir: t.TempDir()}
	var res *importer.Result
	step(t, "import of the export", func() (err error) {
		res, err = importer.Importer{Templates: store}.Import(ctx, importer.Request{Path: exp.Path, Name: "moved"}, nil)
		return err
	})
	m := res.Machine
	if m.CPUs != 2 || m.Memory != 384<<20 || m.Firmware == "uefi" || len(m.NICs) != 2 || m.NICs[0].MAC != testMACs[0] || m.NICs[1].MAC != testMACs[1] {
		t.Errorf("imported machine %+v: want 2 CPUs, 384 MiB, BIOS, MACs %v", m, testMACs)
	}
	imported := filepath.Join(store.Dir, res.Template.ID, res.Template.Boot.Disk)
	if out, err := exec.CommandContext(ctx, "qemu-img", "compare", "-s", disk, imported).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare source and imported disk: %v: %s", err, out)
	}

	// Delete keeps a disk outside every pool and removes a pool volume.
	keep := filepath.Join(t.TempDir(), "outside.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", keep, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	outside := testPrefix + "-outside"
	define(t, ctx, h, qemuDomainXML(outside, keep))
	step(t, "Delete (disk outside the pools)", func() error { return h.Delete(ctx, outside) })
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("delete removed a disk outside every pool: %v", err)
	}
	step(t, "Delete (disk a pool volume)", func() error { return h.Delete(ctx, vm) })
	if _, err := os.Stat(disk); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("delete kept the pool volume %s: %v", disk, err)
	}
	if _, err := h.Get(ctx, vm); !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if links := hostLinks(); !slices.Equal(links, linksBefore) {
		t.Errorf("host links %v, before %v", links, linksBefore)
	}
}

// checkExport checks an export: the XML and one disk beside it, the disk
// the source's bytes, the guest's MACs.
func checkExport(t *testing.T, exp vendorhost.Exported, dir string, sum [32]byte, name string) {
	t.Helper()
	if filepath.Dir(exp.Path) != dir || !strings.HasSuffix(exp.Path, ".xml") {
		t.Errorf("exported to %s, want an XML in %s", exp.Path, dir)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{name + "-disk1.qcow2", name + ".xml"}
	if !slices.Equal(names, want) {
		t.Fatalf("export wrote %q, want %q", names, want)
	}
	if fileSum(t, filepath.Join(dir, want[0])) != sum {
		t.Errorf("the exported disk is not the source's bytes")
	}
	xml, _ := os.ReadFile(exp.Path)
	if !strings.Contains(string(xml), "file='"+want[0]+"'") && !strings.Contains(string(xml), `file="`+want[0]+`"`) {
		t.Errorf("exported XML does not name the copy %s: %s", want[0], xml)
	}
	if g := exp.Guest; len(g.NICs) != 2 || g.NICs[0].MAC != testMACs[0] || g.NICs[1].MAC != testMACs[1] || g.CPUs != 2 || g.MemoryMiB != 384 {
		t.Errorf("exported guest %+v", g)
	}
}

// TestLibvirtHostLXC drives a container of libvirt's LXC driver through
// Open: list, start, console both ways, resources, the refusals LXC has
// (snapshots, export), stop and delete.
func TestLibvirtHostLXC(t *testing.T) {
	testgate.RequireRoot(t, "needs root: libvirtd's LXC driver makes namespaces and cgroups")
	for _, tool := range []string{"libvirtd", "unshare", "mount", "mkdir", "sh", "cp", "qemu-system-x86_64", "busybox", "/usr/lib/libvirt/libvirt_lxc"} {
		hostreq.Need(t, tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	linksBefore := hostLinks()
	d := startTestDaemon(t, ctx)
	rootfs := filepath.Join(d.dir, "ct")
	busyboxTree(t, rootfs)
	var h *Host
	step(t, "Open lxc", func() error {
		h = openURL(t, ctx, "lxc+unix:///?socket="+d.socket())
		return nil
	})
	ct := testPrefix + "-ct"
	define(t, ctx, h, lxcDomainXML(ct, rootfs))
	guests, err := h.List(ctx)
	if err != nil || len(guests) != 1 {
		t.Fatalf("list: %+v, %v", guests, err)
	}
	if g := guests[0]; g.Name != ct || g.State != vendorhost.StateStopped || g.Detail != "lxc" || g.OS != "exe" || g.MemoryMiB != 64 || g.Firmware != "" || len(g.Disks) != 1 || g.Disks[0].Path != rootfs {
		t.Errorf("guest %+v", g)
	}
	for what, err := range map[string]error{
		"snapshot create": h.CreateSnapshot(ctx, ct, "s"),
		"snapshot list":   func() error { _, err := h.Snapshots(ctx, ct); return err }(),
		"export":          func() error { _, err := h.Export(ctx, ct, t.TempDir(), nil); return err }(),
	} {
		if !errors.Is(err, vendorhost.ErrNotSupported) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s of an LXC domain: %v, want one line and ErrNotSupported", what, err)
		}
	}
	step(t, "SetResources (stopped: 96 MiB)", func() error { return h.SetResources(ctx, ct, 0, 96) })
	if g, err := h.Get(ctx, ct); err != nil || g.MemoryMiB != 96 {
		t.Errorf("after SetResources: %+v, %v", g, err)
	}
	step(t, "Start", func() error { return h.Start(ctx, ct) })
	if g, err := h.Get(ctx, ct); err != nil || g.State != vendorhost.StateRunning {
		t.Errorf("after start: %+v, %v", g, err)
	}
	var con io.ReadWriteCloser
	step(t, "Console", func() (err error) { con, err = h.Console(ctx, ct); return err })
	readUntil(t, con, "hello-lxc", 30*time.Second)
	if _, err := con.Write([]byte("ping\n")); err != nil {
		t.Fatalf("console write: %v", err)
	}
	readUntil(t, con, "got:ping", 30*time.Second)
	step(t, "Console Close", con.Close)
	// libvirt's LXC shutdown (initctl, else SIGTERM to init) returns
	// success but leaves this init running (seen with libvirt 9.0): Stop
	// powers it off after the timeout, as it must.
	step(t, "Stop (shutdown, then power off after 3 s)", func() error { return h.Stop(ctx, ct, 3*time.Second, false) })
	if g, err := h.Get(ctx, ct); err != nil || g.State != vendorhost.StateStopped {
		t.Errorf("after stop: %+v, %v", g, err)
	}
	step(t, "Start again, Stop with force", func() error {
		if err := h.Start(ctx, ct); err != nil {
			return err
		}
		return h.Stop(ctx, ct, 0, true)
	})
	step(t, "Delete", func() error { return h.Delete(ctx, ct) })
	if _, err := os.Stat(filepath.Join(rootfs, "bin", "busybox")); err != nil {
		t.Errorf("delete touched the container's tree: %v", err)
	}
	if _, err := h.Get(ctx, ct); !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if links := hostLinks(); !slices.Equal(links, linksBefore) {
		t.Errorf("host links %v, before %v", links, linksBefore)
	}
	// The host goes away: the next call is one line naming its socket.
	d.stop(t)
	if _, err := h.List(ctx); !errors.Is(err, vendorhost.ErrUnreachable) || !strings.Contains(err.Error(), d.socket()) || strings.Contains(err.Error(), "\n") {
		t.Errorf("list of a host that went away: %v, want one line, ErrUnreachable, naming %s", err, d.socket())
	} else {
		t.Logf("list of a host that went away: %v", err)
	}
}
