package safetar

import (
	"archive/tar"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

func charDevice(name string, major, minor int64, mode int64) ent {
	return ent{hdr: tar.Header{Name: name, Typeflag: tar.TypeChar, Mode: mode, Devmajor: major, Devminor: minor, ModTime: testTime}}
}

// StandardDevices makes debootstrap's nodes at their own numbers, without
// setuid bits, and nothing else.
func TestStandardDevicesMakesDebootstrapsNodesOnly(t *testing.T) {
	testgate.RequireRoot(t, "creating device nodes needs CAP_MKNOD")
	s := newSandbox(t, t.TempDir())
	opts := Options{Links: LinksInRoot, Devices: StandardDevices}
	_, err := s.extract(t, buildTar(t, dir("dev"), charDevice("dev/null", 1, 3, 0o4666), charDevice("dev/console", 5, 1, 0o600)), opts)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		rdev uint64
		mode os.FileMode
	}{"dev/null": {unix.Mkdev(1, 3), 0o666}, "dev/console": {unix.Mkdev(5, 1), 0o600}} {
		info, err := os.Lstat(filepath.Join(s.dest, name))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if info.Mode()&os.ModeCharDevice == 0 || st.Rdev != want.rdev || info.Mode()&(os.ModePerm|os.ModeSetuid) != want.mode {
			t.Errorf("%s: mode %v rdev %#x, want a char device %#x of mode %v", name, info.Mode(), st.Rdev, want.rdev, want.mode)
		}
	}
	for _, e := range []ent{charDevice("mem", 1, 1, 0o666), charDevice("kmsg", 1, 11, 0o666), charDevice("ttyS0", 4, 64, 0o666),
		{hdr: tar.Header{Name: "sda", Typeflag: tar.TypeBlock, Mode: 0o666, Devmajor: 8, ModTime: testTime}}} {
		refuse(t, e.hdr.Name, opts, e)
	}
}
