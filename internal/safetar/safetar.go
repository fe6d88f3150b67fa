// Package safetar extracts tar streams from untrusted sources (container
// images, rootfs tarballs, appliance bundles) into a directory without ever
// creating, changing or reading anything outside it.
//
// Every entry's parent directory is looked up with openat2(2) and
// RESOLVE_IN_ROOT, so symlinks met on the way — including ones planted by
// earlier entries of the same archive — resolve as if the destination were
// "/". The last component is then created relative to that directory fd with
// the *at system calls and O_NOFOLLOW/AT_SYMLINK_NOFOLLOW, so it is never
// followed either.
//
// When an entry's name already exists, the later entry wins, as in tar and
// in OCI layer application: a directory over a directory keeps the existing
// one and applies the new metadata; anything else removes what was there
// (a whole subtree when it was a directory) and creates the new entry. This
// is what containerd's archive.Apply and umoci do.
package safetar

import (
	"errors"
	"fmt"
)

// ErrUnsafe marks an archive refused because an entry would escape the
// destination or is of a kind the options forbid; the archive itself must be
// fixed, retrying cannot help.
var ErrUnsafe = errors.New("unsafe archive")

// LinkPolicy says what Extract does with symlink and hardlink entries.
type LinkPolicy int

const (
	// NoLinks refuses every symlink and hardlink entry, for archives whose
	// contents are plain files (an OVA bundle). It is the zero value.
	NoLinks LinkPolicy = iota
	// LinksInRoot keeps links for a container root tree. Symlinks keep their
	// target as written, absolute ones included, because the container
	// resolves them inside its own root; a relative target that climbs above
	// the destination from the link's own directory is refused. Hardlink
	// targets must name an entry already extracted.
	LinksInRoot
)

// DevicePolicy says what Extract does with character and block device
// entries. A device node created by host root would be a real host device,
// so none is ever created. FIFOs are always extracted.
type DevicePolicy int

const (
	// RefuseDevices fails the extraction at the first device node. It is the
	// zero value.
	RefuseDevices DevicePolicy = iota
	// SkipDevices leaves device nodes out with a warning: for container root
	// trees, since runc gives each container its own /dev.
	SkipDevices
	// StandardDevices creates the character devices debootstrap puts in a
	// root tree's /dev (null, zero, full, random, urandom, tty, console,
	// ptmx), each only at its own number, and refuses every other node: a
	// polyvisor template carries those, and its content digest counts them.
	StandardDevices
)

// Options tune Extract; the zero value is the strictest setting.
type Options struct {
	Links   LinkPolicy
	Devices DevicePolicy
	// Whiteouts applies OCI layer whiteouts: an entry ".wh.NAME" removes NAME
	// from the destination, and ".wh..wh..opq" empties its directory of
	// everything this stream did not create. Set it when applying image
	// layers one after the other; leave it off for plain tarballs, where such
	// names are ordinary files.
	Whiteouts bool
	// SkipOwners leaves entries owned by the extracting user instead of the
	// header's uid and gid. Setuid and setgid bits of non-directories are then
	// dropped with a warning: they would grant the extracting user's
	// identity, not the one the archive meant.
	SkipOwners bool
	// MaxBytes bounds the regular-file bytes written; 0 means no limit and
	// a negative value allows none (a caller spreading one budget over
	// several streams has spent it). An entry that would pass it is refused
	// before it is created.
	MaxBytes int64
	// Warn, when set, receives each warning as it happens (skipped devices,
	// skipped extended attributes, dropped setuid bits).
	Warn func(msg string)
}

// Result tells what Extract wrote.
type Result struct {
	Files int // regular files and FIFOs
	Dirs  int
	Links int   // symlinks and hardlinks
	Bytes int64 // regular-file bytes written
	// Warnings holds the first maxWarnings warnings; Options.Warn sees all.
	Warnings []string
}

const maxWarnings = 100

func (x *extractor) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if x.opts.Warn != nil {
		x.opts.Warn(msg)
	}
	switch n := len(x.res.Warnings); {
	case n < maxWarnings:
		x.res.Warnings = append(x.res.Warnings, msg)
	case n == maxWarnings:
		x.res.Warnings = append(x.res.Warnings, "further warnings omitted")
	}
}
