package libvirt

import (
	"context"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

func TestParseTargetForms(t *testing.T) {
	for _, c := range []struct {
		uri, transport, open, display string
	}{
		{"qemu+unix:///system?socket=/tmp/x/libvirt-sock", "unix", "qemu:///system", "/tmp/x/libvirt-sock"},
		{"lxc+unix:///?socket=/tmp/x/libvirt-sock", "unix", "lxc:///", "/tmp/x/libvirt-sock"},
		{"qemu+tcp://host.example/system", "tcp", "qemu:///system", "host.example:16509"},
		{"qemu+tls://host.example:1234/system", "tls", "qemu:///system", "host.example:1234"},
		{"qemu://host.example/system", "tls", "qemu:///system", "host.example:16514"},
		{"qemu+ssh://admin@host.example/system", "ssh", "qemu:///system", "admin@host.example:22"},
		{"xen+libssh2://host.example/system", "ssh", "xen:///system", "host.example:22"},
		{"qemu+ssh://host.example/system?name=qemu:///session", "ssh", "qemu:///session", "host.example:22"},
	} {
		u, err := url.Parse(c.uri)
		if err != nil {
			t.Fatal(err)
		}
		if !Recognises(u) {
			t.Errorf("%s: not recognised", c.uri)
		}
		got, err := parseTarget(u)
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if got.transport != c.transport || got.open != c.open || got.display != c.display {
			t.Errorf("%s: transport %q open %q display %q, want %q %q %q", c.uri, got.transport, got.open, got.display, c.transport, c.open, c.display)
		}
	}
	// The local defaults: the system socket, or the driver's modular one.
	for _, uri := range []string{"qemu:///system", "lxc:///", "xen:///system"} {
		u, _ := url.Parse(uri)
		got, err := parseTarget(u)
		if err != nil || got.transport != "unix" || !strings.HasPrefix(got.socket, "/run/libvirt/") {
			t.Errorf("%s: %+v, %v: want the unix socket under /run/libvirt", uri, got, err)
		}
	}
}

func TestParseTargetRefusals(t *testing.T) {
	for uri, want := range map[string]error{
		"vsphere://root@esx/dc":                vendorhost.ErrInvalid,
		"qemu:///":                             vendorhost.ErrInvalid, // no /system or /session
		"qemu:///other":                        vendorhost.ErrInvalid,
		"qemu:///embed?root=/x":                vendorhost.ErrNotSupported,
		"qemu+ext:///system?command=/bin/true": vendorhost.ErrNotSupported,
		"qemu+tcp:///system":                   vendorhost.ErrInvalid, // no host
		"qemu+unix://host/system":              vendorhost.ErrInvalid,
		"qemu+ssh://root:hunter2@h/system":     vendorhost.ErrInvalid, // a password in the URI
		"qemu+unix:///system?socket=relative":  vendorhost.ErrInvalid,
		"qemu+carrier-pigeon://h/system":       vendorhost.ErrInvalid,
	} {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		_, err = parseTarget(u)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", uri, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", uri, err)
		}
	}
}

// TestOpenMissingSocket: a socket that is not there is one line that names
// it, and ErrUnreachable, at once.
func TestOpenMissingSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-such-sock")
	u, _ := url.Parse("qemu+unix:///system?socket=" + sock)
	began := time.Now()
	h, err := Open(context.Background(), vendorhost.Credentials{URL: u})
	if err == nil {
		h.Close()
		t.Fatal("opened a socket that is not there")
	}
	t.Logf("the error: %v", err)
	if !errors.Is(err, vendorhost.ErrUnreachable) || !strings.Contains(err.Error(), sock) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line, ErrUnreachable, naming %s", err, sock)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %s to fail", took)
	}
	// A password is for ssh only; a fingerprint for TLS only.
	if _, err := Open(context.Background(), vendorhost.Credentials{URL: u, Password: "x"}); !errors.Is(err, vendorhost.ErrNotSupported) {
		t.Errorf("password on a unix URI: %v", err)
	}
	if _, err := Open(context.Background(), vendorhost.Credentials{URL: u, Fingerprint: "ab"}); !errors.Is(err, vendorhost.ErrInvalid) {
		t.Errorf("fingerprint on a unix URI: %v", err)
	}
}

func TestGuestOfDomainXML(t *testing.T) {
	const xml = `<domain type='kvm'>
  <name>web</name>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/web.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='default' volume='data.img'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/lv'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda' bus='sata'/></disk>
    <interface type='network'><mac address='52:54:00:AA:BB:01'/><source network='default'/><model type='virtio'/></interface>
    <interface type='bridge'><mac address='52:54:00:aa:bb:02'/><source bridge='br0'/><model type='e1000'/></interface>
  </devices>
</domain>`
	g, err := guestOf(xml)
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "web" || g.CPUs != 2 || g.MemoryMiB != 1024 || g.Firmware != "uefi" || g.OS != "hvm" || g.Detail != "kvm" {
		t.Errorf("guest %+v", g)
	}
	wantDisks := []vendorhost.Disk{{Path: "/var/lib/libvirt/images/web.qcow2", Format: "qcow2"}, {Path: "default/data.img", Format: "raw"}, {Path: "/dev/vg0/lv", Format: "raw"}}
	if len(g.Disks) != len(wantDisks) {
		t.Fatalf("disks %+v, want %+v", g.Disks, wantDisks)
	}
	for i := range wantDisks {
		if g.Disks[i] != wantDisks[i] {
			t.Errorf("disk %d: %+v, want %+v", i, g.Disks[i], wantDisks[i])
		}
	}
	wantNICs := []vendorhost.NIC{{MAC: "52:54:00:aa:bb:01", Network: "default", Model: "virtio"}, {MAC: "52:54:00:aa:bb:02", Network: "br0", Model: "e1000"}}
	if len(g.NICs) != 2 || g.NICs[0] != wantNICs[0] || g.NICs[1] != wantNICs[1] {
		t.Errorf("nics %+v, want %+v", g.NICs, wantNICs)
	}
	// A pflash loader is UEFI too; none is BIOS.
	g, _ = guestOf(`<domain type='qemu'><name>b</name><os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os></domain>`)
	if g.Firmware != "uefi" {
		t.Errorf("pflash loader: firmware %q", g.Firmware)
	}
	g, _ = guestOf(`<domain type='qemu'><name>b</name><os><type>hvm</type></os></domain>`)
	if g.Firmware != "bios" {
		t.Errorf("no loader: firmware %q", g.Firmware)
	}
	if _, err := guestOf("<domain"); !errors.Is(err, vendorhost.ErrInvalid) {
		t.Errorf("broken XML: %v", err)
	}
}

func TestOrderSnapshotsParentsFirst(t *testing.T) {
	at := time.Unix(1000, 0)
	got := orderSnapshots([]vendorhost.Snapshot{
		{Name: "c", Parent: "b", CreatedAt: at},
		{Name: "a", CreatedAt: at},
		{Name: "b", Parent: "a", CreatedAt: at},
		{Name: "z", CreatedAt: at.Add(-time.Second)},
	})
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "z,a,b,c" {
		t.Errorf("order %v, want z,a,b,c", names)
	}
}

// TestOpenSilentDaemon: a socket that accepts but never answers (a hung
// libvirtd) fails Open with ErrUnreachable when the caller's deadline
// passes, not never.
func TestOpenSilentDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "silent-sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c // held open, never answered
		}
		close(accepted)
	}()
	u, _ := url.Parse("qemu+unix:///system?socket=" + sock)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	h, err := Open(ctx, vendorhost.Credentials{URL: u})
	if err == nil {
		h.Close()
		t.Fatal("opened a daemon that never answered")
	}
	took := time.Since(began)
	t.Logf("the error: %v", err)
	if !errors.Is(err, vendorhost.ErrUnreachable) || !strings.Contains(err.Error(), sock) {
		t.Errorf("error %q: want ErrUnreachable naming %s", err, sock)
	}
	if took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("failed after %s, want about the 2 s deadline", took)
	}
	if c := <-accepted; c != nil {
		c.Close()
	}
}
