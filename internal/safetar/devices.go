package safetar

import (
	"archive/tar"
	"fmt"

	"golang.org/x/sys/unix"
)

// standardNodes are the character devices StandardDevices creates, by
// major and minor number: the ones debootstrap makes, which every Linux
// host has under /dev and lets anyone open (but the console, which a
// container never reaches: runc mounts its own /dev over the tree's).
var standardNodes = map[[2]int64]bool{
	{1, 3}: true, // null
	{1, 5}: true, // zero
	{1, 7}: true, // full
	{1, 8}: true, // random
	{1, 9}: true, // urandom
	{5, 0}: true, // tty
	{5, 1}: true, // console
	{5, 2}: true, // ptmx
}

// standardDevice reports whether hdr is one of standardNodes.
func standardDevice(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeChar && standardNodes[[2]int64{hdr.Devmajor, hdr.Devminor}]
}

// device creates the character device hdr describes, which standardDevice
// allowed: permission bits only, no setuid, setgid or sticky bit.
func (x *extractor) device(name string, hdr *tar.Header) error {
	dir, base, err := x.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if _, err := makeRoom(dir, base, false); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(dir, base, unix.S_IFCHR|0o600, int(dev)); err != nil {
		return fmt.Errorf("creating device node: %w", err)
	}
	h := *hdr
	h.Mode &= 0o777
	if err := x.atMeta(dir, base, name, &h, false); err != nil {
		return err
	}
	x.res.Files++
	return nil
}
