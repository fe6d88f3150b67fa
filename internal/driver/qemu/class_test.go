package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestDefineAVM: a VM's root disk is qcow2, grown to the size asked for,
// and what only containers have is refused in one line naming it.
func TestDefineAVM(t *testing.T) {
	d := New(Options{})
	for _, c := range []struct {
		disk string
		want guest.Size // root disk size; -1: the template's
	}{{"", -1}, {"20GiB", 20 << 30}} {
		def := &guest.Definition{Type: guest.TypeVM}
		if err := d.Define(def, api.GuestCreate{Disk: c.disk}); err != nil {
			t.Errorf("disk %q: %v", c.disk, err)
			continue
		}
		got := guest.Size(-1)
		if disk, ok := def.Disk("root"); ok {
			got = disk.Size
		}
		if def.Rootfs != guest.RootfsQcow2 || got != c.want {
			t.Errorf("disk %q: rootfs %s, root disk %d; want qcow2, %d", c.disk, def.Rootfs, got, c.want)
		}
	}
	for _, c := range []struct {
		req  api.GuestCreate
		want string
	}{
		{api.GuestCreate{Copy: true}, "--copy and --privileged are for containers"},
		{api.GuestCreate{Privileged: true}, "--copy and --privileged are for containers"},
		{api.GuestCreate{Disk: "none"}, "disk: a vm's root disk has a size"},
		{api.GuestCreate{Disk: "0"}, "disk 0: give at least"},
		{api.GuestCreate{IDMap: "shared"}, "idmap: only unprivileged containers have an id map; drop --idmap"},
		{api.GuestCreate{Nesting: true}, "nesting and capabilities are for unprivileged containers"},
		{api.GuestCreate{Capabilities: []string{"default"}}, "nesting and capabilities are for unprivileged containers"},
	} {
		def := &guest.Definition{Type: guest.TypeVM}
		err := d.Define(def, c.req)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: err = %v, want one line saying %q", c.req, err, c.want)
		}
	}
}

// TestViewOfAVM: a VM shows as hypervisor under KVM, as emulation under
// TCG or before it ever ran.
func TestViewOfAVM(t *testing.T) {
	d := New(Options{})
	for accel, want := range map[string]string{"kvm": "hypervisor", "tcg": "emulation", "": "emulation"} {
		var g api.Guest
		d.View(&guest.Definition{Type: guest.TypeVM, Status: guest.Status{Accel: accel}}, &g)
		if g.Class != want || g.IDMap != nil {
			t.Errorf("accel %q: class %q, idmap %+v; want %s and none", accel, g.Class, g.IDMap, want)
		}
	}
}

// TestHandleOfAVM: what Start writes, Recover reads back; a definition
// from before handles gets the defaults; a newer version is refused.
func TestHandleOfAVM(t *testing.T) {
	d := New(Options{Layout: layout.New(t.TempDir())})
	def := &guest.Definition{Name: "v1", Status: guest.Status{State: api.StateRunning, HandleVersion: handleVersion}}
	want := handle{QMP: d.qmpSocket(def)}
	if h, err := d.readHandle(def); err != nil || h != want {
		t.Errorf("a definition without a handle: %+v, %v; want %+v", h, err, want)
	}
	def.Status.Handle = handle{QMP: "/run/elsewhere/qmp.sock"}.encode()
	if h, err := d.readHandle(def); err != nil || h.QMP != "/run/elsewhere/qmp.sock" {
		t.Errorf("round trip: %+v, %v", h, err)
	}
	def.Status.Handle = `{"qmp":""}`
	if _, err := d.readHandle(def); err == nil {
		t.Error("a handle naming no QMP socket was accepted")
	}
	def.Status.HandleVersion = handleVersion + 1
	if _, err := d.readHandle(def); err == nil || !strings.Contains(err.Error(), "handle version 2") {
		t.Errorf("a newer handle: err = %v, want a refusal naming its version", err)
	}
	// Recover refuses it too, before touching anything of the guest.
	if err := d.Recover(t.Context(), def); err == nil || !strings.Contains(err.Error(), "handle version 2") {
		t.Errorf("Recover of a newer handle: err = %v", err)
	}
}

func TestCapabilitiesOfVMs(t *testing.T) {
	d := New(Options{})
	if err := driver.CheckCapabilities(d); err != nil {
		t.Error(err)
	}
	if c := d.Capabilities(); c.CopyRunning || c.Privileged || c.TreeRead {
		t.Errorf("a VM declares %+v: it copies stopped only, never privileged, lends no tree", c)
	}
}
