package idmap

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
	"golang.org/x/sys/unix"
)

// TestMountMappedShowsSharedOwnersInTheGuestsRange checks the direction of
// the user namespace's map on a real idmapped mount: a file stored with a
// shared-range owner reads as the same id in the guest's range, and a file
// owned outside the shared range reads as nobody.
func TestMountMappedShowsSharedOwnersInTheGuestsRange(t *testing.T) {
	testgate.RequireRoot(t, "idmapped mounts need root")
	src, target := t.TempDir(), t.TempDir()
	for name, owner := range map[string]int{"root-file": HostBase, "user-file": HostBase + 1000, "host-file": 0} {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	to := Map{HostBase: 1065536 + 5*Size, Size: Size}
	if err := MountMapped(context.Background(), src, target, Default(), to); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	for name, want := range map[string]uint32{"root-file": to.HostBase, "user-file": to.HostBase + 1000, "host-file": 65534} {
		st, err := os.Stat(filepath.Join(target, name))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != want || sys.Gid != want {
			t.Errorf("%s reads as %d:%d through the mount, want %d", name, sys.Uid, sys.Gid, want)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); err == nil {
		t.Error("the mapped mount is writable; it must be read-only")
	}
}
