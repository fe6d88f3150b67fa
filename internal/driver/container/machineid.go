package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/polyvisor/polyvisor/internal/idmap"
)

// The directory and file systemd keeps a host's identity in, relative to
// a guest's root.
const (
	etcDir    = "etc"
	machineID = "etc/machine-id"
)

// resetMachineID empties the machine id of a copied guest whose tree
// (merged over lower, for an overlay upper dir; lower is empty for a
// full copy) has one with content. An empty /etc/machine-id makes systemd
// generate a new id at boot, as on a freshly installed system.
//
// The tree is the guest's, so anything in it may be a symlink pointing
// anywhere on the host: every path is resolved inside tree (and lower)
// through os.Root, which refuses to leave it, and neither /etc nor
// machine-id is followed when it is a symlink. A guest that replaced them
// keeps what it has, and nothing outside its tree is read or written.
func resetMachineID(tree, lower string, fromTemplate idmap.ShiftFunc) error {
	own, err := os.OpenRoot(tree)
	if err != nil {
		return err
	}
	defer own.Close()
	hasOwn, err := emptyOwnID(own)
	if err != nil || hasOwn || lower == "" {
		return err
	}
	return hideTemplateID(own, lower, fromTemplate)
}

// emptyOwnID empties the tree's own machine id. It reports whether the
// tree decides the guest's id by itself: an /etc or a machine-id of its
// own, of whatever kind (a whiteout, a symlink, an empty file), hides the
// template's.
func emptyOwnID(own *os.Root) (bool, error) {
	etc, err := lstatIn(own, etcDir)
	if err != nil || etc == nil {
		return false, err
	}
	if !etc.IsDir() {
		return true, nil // /etc deleted or replaced in the guest
	}
	id, err := lstatIn(own, machineID)
	if err != nil || id == nil {
		return false, err
	}
	if !id.Mode().IsRegular() || id.Size() == 0 {
		return true, nil // empty, a whiteout (deleted) or a link: nothing to reset
	}
	f, err := own.OpenFile(machineID, os.O_WRONLY, 0)
	if err != nil {
		return true, err
	}
	defer f.Close()
	// What was opened must be what was looked at, not a file that took
	// its place since.
	opened, err := f.Stat()
	if err != nil {
		return true, err
	}
	if !os.SameFile(opened, id) {
		return true, fmt.Errorf("%s changed while it was reset", machineID)
	}
	if err := f.Truncate(0); err != nil {
		return true, err
	}
	return true, f.Close()
}

// hideTemplateID puts an empty machine id, owned like the template's
// (through fromTemplate, into the guest's range), in
// an overlay copy's upper dir where the template's id would show through.
// A template whose /etc or machine-id is not a plain directory and file
// is left alone: an /etc made in the upper dir would hide a linked one.
func hideTemplateID(own *os.Root, lower string, fromTemplate idmap.ShiftFunc) error {
	tmpl, err := os.OpenRoot(lower)
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	defer tmpl.Close()
	etcRef, err := lstatIn(tmpl, etcDir)
	if err != nil || etcRef == nil || !etcRef.IsDir() {
		return err
	}
	ref, err := lstatIn(tmpl, machineID)
	if err != nil || ref == nil || !ref.Mode().IsRegular() || ref.Size() == 0 {
		return err
	}
	// emptyOwnID found no /etc, or a directory with no machine-id in it.
	if etc, err := lstatIn(own, etcDir); err != nil {
		return err
	} else if etc == nil {
		if err := own.Mkdir(etcDir, 0o700); err != nil {
			return err
		}
		if err := ownLike(own, etcDir, os.O_RDONLY|syscall.O_DIRECTORY, etcRef, fromTemplate); err != nil {
			return err
		}
	}
	return ownLike(own, machineID, os.O_WRONLY|os.O_CREATE|os.O_EXCL, ref, fromTemplate)
}

// ownLike opens name in root with flag (creating it, where flag says so)
// and gives it the owner and mode of ref through the open file: unlike
// a chown or chmod by name, that cannot be turned onto another file.
func ownLike(root *os.Root, name string, flag int, ref fs.FileInfo, shift idmap.ShiftFunc) error {
	st, ok := ref.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner in the template's stat data", name)
	}
	f, err := root.OpenFile(name, flag, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	uid, gid, err := shift(st.Uid, st.Gid)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// Owner first: chown clears the setuid and setgid bits.
	if err := f.Chown(int(uid), int(gid)); err != nil {
		return err
	}
	if err := f.Chmod(ref.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
		return err
	}
	return f.Close()
}

// lstatIn describes name in root without following it, or returns nil
// when it, or a directory above it, is not there.
func lstatIn(root *os.Root, name string) (fs.FileInfo, error) {
	info, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	return info, err
}
