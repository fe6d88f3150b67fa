package vmimage

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// cpioWriter writes a cpio archive in the "newc" format the kernel unpacks an initramfs from
// (Documentation/driver-api/early-userspace/buffer-format.rst). Writing it here rather than
// with the cpio tool lets the archive hold root-owned files and device nodes without making
// them on the host first. Entries carry mtime 0, so the same input gives the same archive.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error // the first write error; later writes do nothing
}

// cpioTrailer is the name of the entry that ends an archive.
const cpioTrailer = "TRAILER!!!"

// newCPIOWriter returns a writer of a newc archive to w.
func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w} }

// dir adds a directory; its parents must have been added before.
func (c *cpioWriter) dir(name string, perm os.FileMode) {
	c.entry(name, syscall.S_IFDIR|uint32(perm.Perm()), 0, nil)
}

// file adds a regular file holding data.
func (c *cpioWriter) file(name string, perm os.FileMode, data []byte) {
	c.entry(name, syscall.S_IFREG|uint32(perm.Perm()), 0, data)
}

// symlink adds a symbolic link to target.
func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, syscall.S_IFLNK|0o777, 0, []byte(target))
}

// charDevice adds a character device node.
func (c *cpioWriter) charDevice(name string, perm os.FileMode, major, minor uint32) {
	c.entry(name, syscall.S_IFCHR|uint32(perm.Perm()), major<<20|minor, nil)
}

// close ends the archive and returns the first error met while writing it. It does not close
// the underlying writer.
func (c *cpioWriter) close() error {
	c.entry(cpioTrailer, 0, 0, nil)
	return c.err
}

// entry writes one header, name and data, each padded to four bytes. rdev packs the device
// number as major<<20 | minor.
func (c *cpioWriter) entry(name string, mode, rdev uint32, data []byte) {
	if c.err != nil {
		return
	}
	if name != cpioTrailer && (name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\x00")) {
		c.err = fmt.Errorf("cpio entry name %q: want a relative path", name)
		return
	}
	ino := uint32(0)
	if name != cpioTrailer {
		c.ino++
		ino = c.ino
	}
	nlink := uint32(1)
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
	// rdevminor, namesize (with its NUL), check
	header := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev>>20, rdev&(1<<20-1), len(name)+1, 0)
	c.write([]byte(header))
	c.write([]byte(name + "\x00"))
	c.write(make([]byte, pad4(len(header)+len(name)+1)))
	c.write(data)
	c.write(make([]byte, pad4(len(data))))
}

func (c *cpioWriter) write(p []byte) {
	if c.err == nil && len(p) > 0 {
		_, c.err = c.w.Write(p)
	}
}

// pad4 returns how many bytes bring n to a multiple of four.
func pad4(n int) int { return (4 - n%4) % 4 }
