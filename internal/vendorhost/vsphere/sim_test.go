package vsphere

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// The simulator's user and password; it refuses any other.
const (
	simUser     = "administrator"
	simPassword = "s3cret-Pa55"
)

// sim is a vcsim vCenter (one datacenter DC0, a standalone host and a
// cluster, four VMs) serving TLS with its own certificate on loopback.
type sim struct {
	model *simulator.Model
	srv   *simulator.Server
	// creds open it: the certificate pinned, the right password.
	creds       vendorhost.Credentials
	fingerprint string
}

func startSim(t *testing.T) *sim {
	t.Helper()
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{User: url.UserPassword(simUser, simPassword)}
	srv := m.Service.NewServer()
	t.Cleanup(srv.Close)
	fp := fingerprintOf(srv.Certificate().Raw)
	return &sim{
		model: m, srv: srv, fingerprint: fp,
		creds: vendorhost.Credentials{
			URL:         &url.URL{Scheme: Scheme, User: url.User(simUser), Host: srv.URL.Host, Path: "/DC0"},
			Password:    simPassword,
			Fingerprint: fp,
		},
	}
}

// open connects to the simulator with creds, closing it at the end.
func (s *sim) open(t *testing.T, creds vendorhost.Credentials) *host {
	t.Helper()
	h, err := Open(context.Background(), creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h.(*host)
}

// datastorePath resolves "[DS] dir/file" to the file in the simulator's
// datastore directory.
func (s *sim) datastorePath(t *testing.T, dsPath string) string {
	t.Helper()
	var p object.DatastorePath
	if !p.FromString(dsPath) {
		t.Fatalf("datastore path %q", dsPath)
	}
	for _, e := range s.model.Map().All("Datastore") {
		ds := e.(*simulator.Datastore)
		if ds.Name == p.Datastore {
			return filepath.Join(ds.Info.GetDatastoreInfo().Url, p.Path)
		}
	}
	t.Fatalf("no datastore %s", p.Datastore)
	return ""
}

// putDisk writes a stream-optimized VMDK of size bytes of random content
// (which does not compress) where a VM's disk lies in the simulator's
// datastore: vcsim's own disk files are empty, and polyvisor's importer
// tells formats by content.
func (s *sim) putDisk(t *testing.T, dsPath string, size int) {
	t.Helper()
	hostreq.Need(t, "qemu-img")
	raw := filepath.Join(t.TempDir(), "disk.raw")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := s.datastorePath(t, dsPath)
	os.Remove(dst)
	if out, err := exec.Command("qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, dst).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
}

// reconfigure changes a VM with govmomi directly, as a vSphere client
// would, to give the test a VM with UEFI and a second NIC.
func reconfigure(t *testing.T, h *host, name string, spec types.VirtualMachineConfigSpec) {
	t.Helper()
	ctx := context.Background()
	_, obj, err := h.vm(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	task, err := obj.Reconfigure(ctx, spec)
	if err == nil {
		err = h.waitTask(ctx, task)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// oneLine fails t when err is not a single line.
func oneLine(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
}
