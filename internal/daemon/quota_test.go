package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/guest"
)

// TestRootDiskSizeOfARequest: an overlay container gets the default quota
// unless the request says, none gives none, a copy takes no quota, and a
// VM's root disk has a size; each refusal is one line naming disk.
func TestRootDiskSizeOfARequest(t *testing.T) {
	def := func(typ, rootfs string) *guest.Definition { return &guest.Definition{Type: typ, Rootfs: rootfs} }
	for _, c := range []struct {
		def   *guest.Definition
		value string
		want  guest.Size // root disk size; -1: no root disk
	}{
		{def(guest.TypeContainer, guest.RootfsOverlay), "", guest.DefaultDiskQuota},
		{def(guest.TypeContainer, guest.RootfsOverlay), "64MiB", 64 << 20},
		{def(guest.TypeContainer, guest.RootfsOverlay), "none", -1},
		{def(guest.TypeContainer, guest.RootfsCopy), "", -1},
		{def(guest.TypeContainer, guest.RootfsCopy), "none", -1},
		{def(guest.TypeVM, guest.RootfsQcow2), "", -1},
		{def(guest.TypeVM, guest.RootfsQcow2), "20GiB", 20 << 30},
	} {
		if err := setRootDiskSize(c.def, c.value); err != nil {
			t.Errorf("%s/%s disk %q: %v", c.def.Type, c.def.Rootfs, c.value, err)
			continue
		}
		got := guest.Size(-1)
		if disk, ok := c.def.Disk("root"); ok {
			got = disk.Size
		}
		if got != c.want {
			t.Errorf("%s/%s disk %q: root disk size %d, want %d", c.def.Type, c.def.Rootfs, c.value, got, c.want)
		}
	}
	for _, c := range []struct {
		def         *guest.Definition
		value, want string
	}{
		{def(guest.TypeContainer, guest.RootfsCopy), "1GiB", "disk: a --copy or --privileged container's tree is a plain directory"},
		{def(guest.TypeVM, guest.RootfsQcow2), "none", "disk: a vm's root disk has a size"},
		{def(guest.TypeContainer, guest.RootfsOverlay), "0", "disk 0: give at least 16MiB"},
		{def(guest.TypeContainer, guest.RootfsOverlay), "-3GiB", `disk: "-3GiB" is not a size`},
		{def(guest.TypeContainer, guest.RootfsOverlay), "65TiB", "disk 65TiB: use at most 64TiB"},
	} {
		err := setRootDiskSize(c.def, c.value)
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s/%s disk %q: err = %v, want one line saying %q", c.def.Type, c.def.Rootfs, c.value, err, c.want)
		}
		if len(c.def.Disks) != 0 {
			t.Errorf("%s/%s disk %q: refused, yet disks %+v", c.def.Type, c.def.Rootfs, c.value, c.def.Disks)
		}
	}
}
