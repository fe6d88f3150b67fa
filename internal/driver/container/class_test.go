package container

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestRootDiskSizeOfARequest: an overlay container gets the default quota
// unless the request says, none gives none, and a copy takes no quota;
// each refusal is one line naming disk.
func TestRootDiskSizeOfARequest(t *testing.T) {
	def := func(rootfs string) *guest.Definition {
		return &guest.Definition{Type: guest.TypeContainer, Rootfs: rootfs}
	}
	for _, c := range []struct {
		def   *guest.Definition
		value string
		want  guest.Size // root disk size; -1: no root disk
	}{
		{def(guest.RootfsOverlay), "", guest.DefaultDiskQuota},
		{def(guest.RootfsOverlay), "64MiB", 64 << 20},
		{def(guest.RootfsOverlay), "none", -1},
		{def(guest.RootfsCopy), "", -1},
		{def(guest.RootfsCopy), "none", -1},
	} {
		if err := rootDiskSize(c.def, c.value); err != nil {
			t.Errorf("%s disk %q: %v", c.def.Rootfs, c.value, err)
			continue
		}
		got := guest.Size(-1)
		if disk, ok := c.def.Disk("root"); ok {
			got = disk.Size
		}
		if got != c.want {
			t.Errorf("%s disk %q: root disk size %d, want %d", c.def.Rootfs, c.value, got, c.want)
		}
	}
	for _, c := range []struct {
		def         *guest.Definition
		value, want string
	}{
		{def(guest.RootfsCopy), "1GiB", "disk: a --copy or --privileged container's tree is a plain directory"},
		{def(guest.RootfsOverlay), "0", "disk 0: give at least 16MiB"},
		{def(guest.RootfsOverlay), "-3GiB", `disk: "-3GiB" is not a size`},
		{def(guest.RootfsOverlay), "65TiB", "disk 65TiB: use at most 64TiB"},
	} {
		err := rootDiskSize(c.def, c.value)
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s disk %q: err = %v, want one line saying %q", c.def.Rootfs, c.value, err, c.want)
		}
		if len(c.def.Disks) != 0 {
			t.Errorf("%s disk %q: refused, yet disks %+v", c.def.Rootfs, c.value, c.def.Disks)
		}
	}
}

// TestDefineAContainer: the rootfs, id map and confinement a request
// gives, and the requests a container refuses, each in one line naming
// the field.
func TestDefineAContainer(t *testing.T) {
	d := New(Options{})
	for _, c := range []struct {
		req            api.GuestCreate
		rootfs, idMap  string
		nesting, quota bool
	}{
		{api.GuestCreate{}, guest.RootfsOverlay, idmap.Isolated, false, true},
		{api.GuestCreate{IDMap: "shared"}, guest.RootfsOverlay, idmap.Shared, false, true},
		{api.GuestCreate{Copy: true}, guest.RootfsCopy, idmap.Isolated, false, false},
		{api.GuestCreate{Privileged: true}, guest.RootfsCopy, "", false, false},
		{api.GuestCreate{Nesting: true, Disk: "none"}, guest.RootfsOverlay, idmap.Isolated, true, false},
	} {
		def := &guest.Definition{Type: guest.TypeContainer, Privileged: c.req.Privileged}
		if err := d.Define(def, c.req); err != nil {
			t.Errorf("%+v: %v", c.req, err)
			continue
		}
		_, quota := def.Disk("root")
		if def.Rootfs != c.rootfs || def.Security.IDMap != c.idMap || def.Security.Nesting != c.nesting || quota != c.quota {
			t.Errorf("%+v: rootfs %s, idmap %q, nesting %v, quota %v; want %s, %q, %v, %v", c.req, def.Rootfs, def.Security.IDMap, def.Security.Nesting, quota, c.rootfs, c.idMap, c.nesting, c.quota)
		}
	}
	for _, c := range []struct {
		arch string
		req  api.GuestCreate
		want string
	}{
		{"riscv64", api.GuestCreate{}, "arch riscv64: a container shares the host's"},
		{"", api.GuestCreate{Privileged: true, IDMap: "shared"}, "idmap: only unprivileged containers have an id map; drop --idmap"},
		{"", api.GuestCreate{Privileged: true, Nesting: true}, "nesting and capabilities are for unprivileged containers"},
		{"", api.GuestCreate{IDMap: "mine"}, `idmap "mine": use isolated`},
		{"", api.GuestCreate{Capabilities: []string{"CAP_NOPE"}}, "capabilities"},
	} {
		def := &guest.Definition{Type: guest.TypeContainer, Arch: c.arch, Privileged: c.req.Privileged}
		err := d.Define(def, c.req)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("arch %q %+v: err = %v, want one line saying %q", c.arch, c.req, err, c.want)
		}
	}
}

// TestViewOfAContainer: its class, and the id map it runs under.
func TestViewOfAContainer(t *testing.T) {
	d := New(Options{})
	def := &guest.Definition{Name: "c1", Type: guest.TypeContainer, Rootfs: guest.RootfsOverlay,
		Security: guest.Security{IDMap: idmap.Isolated, IDMapBase: idmap.IsolatedPool().First}}
	var g api.Guest
	d.View(def, &g)
	if g.Class != "container" || g.IDMap == nil || g.IDMap.Kind != idmap.Isolated || g.IDMap.HostUID != idmap.IsolatedPool().First || g.Confinement == nil {
		t.Errorf("view: class %q, idmap %+v, confinement %+v", g.Class, g.IDMap, g.Confinement)
	}
	def.Privileged, def.Security = true, guest.Security{}
	g = api.Guest{}
	d.View(def, &g)
	if g.IDMap != nil {
		t.Errorf("a privileged container's view has an id map: %+v", g.IDMap)
	}
}

// TestHandleOfAContainer: what Start writes, Recover reads back; a
// definition from before handles gets the defaults, with a monitor of its
// own; a handle of a newer version, or one naming another runc root, is
// refused.
func TestHandleOfAContainer(t *testing.T) {
	d := New(Options{Layout: layout.New(t.TempDir())})
	def := &guest.Definition{Name: "c1", Status: guest.Status{State: api.StateRunning, HandleVersion: handleVersion}}
	want := handle{RuncRoot: d.opts.Layout.RuncRoot(), ID: "c1"}
	if h, err := d.readHandle(def); err != nil || h != want {
		t.Errorf("a definition without a handle: %+v, %v; want %+v", h, err, want)
	}
	want = d.newHandle(def)
	if !want.Supervised {
		t.Errorf("a new handle: %+v, want the guest supervised", want)
	}
	def.Status.Handle = want.encode()
	if h, err := d.readHandle(def); err != nil || h != want {
		t.Errorf("round trip: %+v, %v; want %+v", h, err, want)
	}
	def.Status.HandleVersion = handleVersion + 1
	if _, err := d.readHandle(def); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("handle version %d", handleVersion+1)) {
		t.Errorf("a newer handle: err = %v, want a refusal naming its version", err)
	}
	def.Status.HandleVersion = handleVersion
	def.Status.Handle = handle{RuncRoot: "/elsewhere", ID: "c1"}.encode()
	if _, err := d.readHandle(def); err == nil || !strings.Contains(err.Error(), "/elsewhere") {
		t.Errorf("a handle of another runc root: err = %v, want a refusal naming it", err)
	}
}

func TestCapabilitiesOfContainers(t *testing.T) {
	if err := driver.CheckCapabilities(New(Options{})); err != nil {
		t.Error(err)
	}
}
