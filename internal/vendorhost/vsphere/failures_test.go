package vsphere

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// TestOpenRefusesABadPassword: one line naming the user, wrapping ErrAuth.
func TestOpenRefusesABadPassword(t *testing.T) {
	s := startSim(t)
	creds := s.creds
	creds.Password = "wrong"
	_, err := Open(context.Background(), creds)
	oneLine(t, err)
	if !errors.Is(err, vendorhost.ErrAuth) {
		t.Errorf("%v: not ErrAuth", err)
	}
	want := "vsphere " + s.srv.URL.Host + ": user " + simUser + ": login refused: check the password"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// TestOpenPinsTheCertificate: without a fingerprint the simulator's own
// certificate is refused with a line that prints its fingerprint and the
// flag to accept it; another fingerprint is refused the same way; the
// right one, in any spelling, opens.
func TestOpenPinsTheCertificate(t *testing.T) {
	s := startSim(t)
	for name, fp := range map[string]string{
		"none":  "",
		"other": strings.Repeat("ab", 32),
	} {
		creds := s.creds
		creds.Fingerprint = fp
		_, err := Open(context.Background(), creds)
		oneLine(t, err)
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, vendorhost.ErrAuth) || errors.Is(err, vendorhost.ErrUnreachable) {
			t.Errorf("%s: %v: want ErrAuth only", name, err)
		}
		if !strings.Contains(err.Error(), "--insecure-fingerprint "+s.fingerprint) {
			t.Errorf("%s: %q does not name the flag and the certificate's fingerprint %s", name, err, s.fingerprint)
		}
	}
	creds := s.creds
	creds.Fingerprint = strings.ToLower(strings.ReplaceAll(s.fingerprint, ":", ""))
	h, err := Open(context.Background(), creds)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	creds.Fingerprint = "12:34"
	if _, err := Open(context.Background(), creds); !errors.Is(err, vendorhost.ErrInvalid) {
		t.Errorf("a malformed fingerprint: %v", err)
	}
}

// TestOpenRefusesBadURLs: a URL that is not vsphere://USER@HOST, a
// password in it, a datacenter the host lacks.
func TestOpenRefusesBadURLs(t *testing.T) {
	s := startSim(t)
	for name, u := range map[string]*url.URL{
		"scheme":   {Scheme: "https", User: url.User(simUser), Host: s.srv.URL.Host},
		"no user":  {Scheme: Scheme, Host: s.srv.URL.Host},
		"password": {Scheme: Scheme, User: url.UserPassword(simUser, simPassword), Host: s.srv.URL.Host},
	} {
		creds := s.creds
		creds.URL = u
		if _, err := Open(context.Background(), creds); !errors.Is(err, vendorhost.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	creds := s.creds
	creds.URL = &url.URL{Scheme: Scheme, User: url.User(simUser), Host: s.srv.URL.Host, Path: "/NoSuchDC"}
	_, err := Open(context.Background(), creds)
	oneLine(t, err)
	t.Log(err)
	if !errors.Is(err, vendorhost.ErrNotFound) {
		t.Errorf("a missing datacenter: %v", err)
	}
	// Without a path, the only datacenter.
	creds.URL.Path = ""
	h := s.open(t, creds)
	if h.dc.Name() != "DC0" {
		t.Errorf("default datacenter %s", h.dc.Name())
	}
}

// TestHostGoingAwayBeforeACall: a call to a host that is gone fails at
// once with one line wrapping ErrUnreachable.
func TestHostGoingAwayBeforeACall(t *testing.T) {
	s := startSim(t)
	h := s.open(t, s.creds)
	s.srv.Close()
	start := time.Now()
	_, err := h.Get(context.Background(), vm0)
	oneLine(t, err)
	t.Log(err)
	if !errors.Is(err, vendorhost.ErrUnreachable) {
		t.Errorf("%v: not ErrUnreachable", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the call took %s", d)
	}
	if _, err := Open(context.Background(), s.creds); !errors.Is(err, vendorhost.ErrUnreachable) {
		t.Errorf("Open of a host that is gone: %v", err)
	}
}

// TestHostGoingAwayDuringExport closes the simulator's connections and
// listener once the disk's download has begun: the export fails with
// one line wrapping ErrUnreachable and leaves nothing in its directory.
func TestHostGoingAwayDuringExport(t *testing.T) {
	s := startSim(t)
	h := s.open(t, s.creds)
	ctx := context.Background()
	if err := h.Stop(ctx, vm0, 0, true); err != nil {
		t.Fatal(err)
	}
	g, err := h.Get(ctx, vm0)
	if err != nil {
		t.Fatal(err)
	}
	// Larger than loopback's socket buffers, so that the cut is
	// mid-stream, not after the host wrote it all.
	s.putDisk(t, g.Disks[0].Path, 48<<20)
	dir := t.TempDir()
	cut := false
	start := time.Now()
	_, err = h.Export(ctx, vm0, dir, func(phase string, done, total int64) {
		if strings.HasPrefix(phase, "downloading") && done > 0 && !cut {
			cut = true
			s.srv.Listener.Close()
			s.srv.CloseClientConnections()
		}
	})
	if !cut {
		t.Fatalf("the download never began: %v", err)
	}
	oneLine(t, err)
	t.Log(err)
	if !errors.Is(err, vendorhost.ErrUnreachable) {
		t.Errorf("%v: not ErrUnreachable", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the export took %s to fail", d)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("a failed export left %v", left)
	}
}

// TestHostThatStopsAnsweringTimesOut: a host that takes the connection
// and the TLS handshake but never answers fails a call after the call
// timeout, as unreachable, instead of hanging.
func TestHostThatStopsAnsweringTimesOut(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	creds := vendorhost.Credentials{
		URL:         &url.URL{Scheme: Scheme, User: url.User(simUser), Host: srv.Listener.Addr().String()},
		Password:    simPassword,
		Fingerprint: fingerprintOf(srv.Certificate().Raw),
	}
	start := time.Now()
	_, err := open(context.Background(), creds, time.Second)
	oneLine(t, err)
	t.Log(err)
	if !errors.Is(err, vendorhost.ErrUnreachable) {
		t.Errorf("%v: not ErrUnreachable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %s with a call timeout of 1s", d)
	}
}

// TestSessionLogsInAgain: a session the host dropped (an idle timeout,
// a restarted vCenter) is opened again on the next call.
func TestSessionLogsInAgain(t *testing.T) {
	s := startSim(t)
	h := s.open(t, s.creds)
	ctx := context.Background()
	if err := session.NewManager(h.vc).Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.List(ctx); err != nil {
		t.Fatalf("List after the session ended: %v", err)
	}
}

func TestParseFingerprint(t *testing.T) {
	want := strings.Repeat("ab", 32)
	for _, in := range []string{want, strings.ToUpper(want), strings.TrimSuffix(strings.Repeat("AB:", 32), ":"), " " + want + " "} {
		if sum, err := parseFingerprint(in); err != nil || hex.EncodeToString(sum) != want {
			t.Errorf("parseFingerprint(%q) = %x, %v", in, sum, err)
		}
	}
	for _, in := range []string{"", "ab", want + "ab", strings.Repeat("zz", 32)} {
		if _, err := parseFingerprint(in); err == nil {
			t.Errorf("parseFingerprint(%q) accepted", in)
		}
	}
}

// TestCheckDescriptorFindsWhatIsMissing: the check a host's descriptor
// passes before it goes into an export accepts polyvisor's own and
// finds a lost MAC, CPU count or firmware.
func TestCheckDescriptorFindsWhatIsMissing(t *testing.T) {
	g := vendorhost.Guest{
		Name: "web", CPUs: 2, MemoryMiB: 512, Firmware: "uefi", OS: "debian12_64Guest",
		Disks: []vendorhost.Disk{{Path: "[ds] web/web.vmdk", Capacity: 1 << 30}},
		NICs:  []vendorhost.NIC{{MAC: "00:50:56:00:00:01", Model: "vmxnet3"}, {MAC: "00:50:56:00:00:02", Model: "e1000"}},
	}
	desc, err := ownDescriptor(g, types.OvfFile{Path: "web-disk1.vmdk", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDescriptor(desc, g, 1); err != nil {
		t.Errorf("own descriptor: %v", err)
	}
	for name, change := range map[string]func(*vendorhost.Guest){
		"mac":      func(g *vendorhost.Guest) { g.NICs[1].MAC = "00:50:56:00:00:03" },
		"cpus":     func(g *vendorhost.Guest) { g.CPUs = 4 },
		"firmware": func(g *vendorhost.Guest) { g.Firmware = "bios" },
		"nics":     func(g *vendorhost.Guest) { g.NICs = g.NICs[:1] },
	} {
		other := g
		other.NICs = slices.Clone(g.NICs)
		change(&other)
		if err := checkDescriptor(desc, other, 1); err == nil {
			t.Errorf("%s: a descriptor that misstates the VM passed", name)
		}
	}
	if err := checkDescriptor(desc, g, 2); err == nil {
		t.Error("a descriptor with one disk of two passed")
	}
}

// TestCheckDescriptorAcceptsVMwaresOwn: a descriptor as VMware writes it
// (ovftool's, the shape of OvfManager's with the mac option: two disks,
// UEFI as vmw:Config, the MAC in capitals) passes for the VM it states.
func TestCheckDescriptorAcceptsVMwaresOwn(t *testing.T) {
	desc, err := os.ReadFile("../../ovf/testdata/vmware-ovftool.ovf")
	if err != nil {
		t.Fatal(err)
	}
	g := vendorhost.Guest{
		Name: "web01", CPUs: 4, MemoryMiB: 8192, Firmware: "uefi",
		NICs: []vendorhost.NIC{{MAC: "00:50:56:ab:cd:01", Model: "vmxnet3"}},
	}
	if err := checkDescriptor(desc, g, 2); err != nil {
		t.Error(err)
	}
	g.NICs[0].MAC = "00:50:56:ab:cd:02"
	if err := checkDescriptor(desc, g, 2); err == nil {
		t.Error("another MAC passed")
	}
}
