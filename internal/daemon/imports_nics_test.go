package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/fake"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// newVMHarness is newHarness with a fake driver serving VMs, which
// imported guests are, and a default network other than none.
func newVMHarness(t *testing.T) *harness {
	t.Helper()
	state := t.TempDir()
	if err := os.Chmod(filepath.Dir(state), 0o711); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: state, faults: &faults{points: map[string]func() error{}}}
	h.host = fake.NewHost()
	t.Cleanup(h.host.Close)
	h.fake = fake.New(fake.Options{Type: guest.TypeVM, RunDir: h.runDir, Host: h.host})
	reg := driver.NewRegistry()
	reg.Register(h.fake)
	h.store = &faultyStore{FileStore: guest.FileStore{Dir: filepath.Join(state, "guests")}}
	d, err := New(Config{
		StateDir: state, Socket: filepath.Join(state, "api.sock"), Drivers: reg,
		Log: slog.New(slog.DiscardHandler), DefaultNetwork: "polyvisor0", Fault: h.faults.fault,
		Store: h.store,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.ctx, h.d, h.cancel = ctx, d, cancel
	if err := d.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	return h
}

// manyNICsVMX writes a .vmx with n NICs, MAC i being 00:50:56:00:00:i,
// and a small disk beside it.
func manyNICsVMX(t *testing.T, n int) (string, []string) {
	t.Helper()
	hostreq.Need(t, "qemu-img")
	dir := t.TempDir()
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "vmdk", filepath.Join(dir, "disk.vmdk"), "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	text := "config.version = \"8\"\ndisplayName = \"many\"\nnumvcpus = \"1\"\nmemsize = \"128\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"disk.vmdk\"\n"
	var macs []string
	for i := range n {
		macs = append(macs, fmt.Sprintf("00:50:56:00:00:%02x", i))
		text += fmt.Sprintf("ethernet%d.present = \"TRUE\"\nethernet%d.addressType = \"static\"\nethernet%d.address = %q\n", i, i, i, macs[i])
	}
	vmx := filepath.Join(dir, "many.vmx")
	if err := os.WriteFile(vmx, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return vmx, macs
}

// An imported VM keeps every NIC with its MAC, in order: all on the
// default network when none is asked, NIC i on network i when --network
// lists them (issue 18).
func TestImportedGuestKeepsEveryNIC(t *testing.T) {
	h := newVMHarness(t)
	vmx, macs := manyNICsVMX(t, 10)
	for _, tc := range []struct {
		name     string
		networks []string
		want     []string // network of each NIC
	}{
		{"all-default", nil, slices.Repeat([]string{"polyvisor0"}, 10)},
		{"listed", []string{"a,b", "c"}, append([]string{"a", "b"}, slices.Repeat([]string{"c"}, 8)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := h.wait(h.begin(http.MethodPost, "/imports", api.Import{Path: vmx, Name: tc.name, Networks: tc.networks}))
			if op.Status != api.OpSuccess {
				t.Fatalf("import: %s", op.Error)
			}
			def := h.definition(tc.name)
			if len(def.NICs) != len(macs) {
				t.Fatalf("the guest has %d NICs, want %d: %+v", len(def.NICs), len(macs), def.NICs)
			}
			for i, nic := range def.NICs {
				if nic.MAC != macs[i] || nic.Network != tc.want[i] {
					t.Errorf("NIC %d: %s on %s, want %s on %s", i+1, nic.MAC, nic.Network, macs[i], tc.want[i])
				}
			}
			if want := slices.Compact(slices.Clone(tc.want)); !slices.Equal(def.Networks, want) {
				t.Errorf("networks %v, want %v", def.Networks, want)
			}
		})
	}
}

func TestImportNICsMapsNICsToNetworks(t *testing.T) {
	nics := []vmdef.NIC{{MAC: "00:50:56:00:00:01", Network: "VM Network"}, {MAC: "00:50:56:00:00:02"}, {}}
	for _, tc := range []struct {
		name     string
		machine  []vmdef.NIC
		asked    []string
		networks []string
		nics     []guest.NIC
		warn     string
		err      string
	}{
		{name: "default takes all", machine: nics, networks: []string{"def"},
			nics: []guest.NIC{{Network: "def", MAC: "00:50:56:00:00:01"}, {Network: "def", MAC: "00:50:56:00:00:02"}, {Network: "def"}}},
		{name: "one takes all", machine: nics, asked: []string{"a"}, networks: []string{"a"},
			nics: []guest.NIC{{Network: "a", MAC: "00:50:56:00:00:01"}, {Network: "a", MAC: "00:50:56:00:00:02"}, {Network: "a"}}},
		{name: "one per NIC", machine: nics, asked: []string{"a", "b,a"}, networks: []string{"a", "b"},
			nics: []guest.NIC{{Network: "a", MAC: "00:50:56:00:00:01"}, {Network: "b", MAC: "00:50:56:00:00:02"}, {Network: "a"}}},
		{name: "fewer networks than NICs", machine: nics, asked: []string{"a,b"}, networks: []string{"a", "b"},
			nics: []guest.NIC{{Network: "a", MAC: "00:50:56:00:00:01"}, {Network: "b", MAC: "00:50:56:00:00:02"}, {Network: "b"}}},
		{name: "more networks than NICs", machine: nics[:1], asked: []string{"a,b"}, networks: []string{"a", "b"},
			nics: []guest.NIC{{Network: "a", MAC: "00:50:56:00:00:01"}, {Network: "b"}}},
		{name: "none", machine: nics, asked: []string{"none"}, warn: "NIC 1 (00:50:56:00:00:01 on \"VM Network\") is not connected: the guest joins no network"},
		{name: "no NICs", asked: nil, networks: []string{"def"}},
		{name: "none with others", machine: nics, asked: []string{"a,none"}, err: "cannot go with other networks"},
		{name: "bad name", machine: nics, asked: []string{"Bad_Name"}, err: "Bad_Name"},
	} {
		networks, got, warnings, err := importNICs(tc.machine, tc.asked, "def")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(networks, tc.networks) || !slices.Equal(got, tc.nics) {
			t.Errorf("%s: networks %v NICs %+v, want %v %+v", tc.name, networks, got, tc.networks, tc.nics)
		}
		if tc.warn != "" && !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, tc.warn) }) {
			t.Errorf("%s: warnings %q, want one saying %q", tc.name, warnings, tc.warn)
		}
	}
}
