package daemon

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
)

// Who may reach what under the state dir. A guest's own directory is open
// (search only) to its unprivileged root alone, through the group of the
// id map's root: the container's root must reach its rootfs, but a plain
// host user must not reach a guest's tree, where a setuid program a guest
// made (owned by the map's root) would run as that root. Templates are read
// by the daemon and by overlayfs with the daemon's credentials only.
const (
	guestDirMode    = 0o710
	templateDirMode = 0o700
	searchOnlyMode  = 0o711 // the state dir and guests/: traversable, not listable
)

// gateGuestDir gives a guest's directory its owner and mode: its group is
// the host gid of the guest's root (see rootGroup).
func gateGuestDir(dir string, group uint32) error {
	// A daemon without root (tests, with a class that needs none) cannot
	// give its directories away and keeps them its own; a guest with an
	// id-mapped root, whom the group is for, needs a root daemon anyway.
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 0, int(group)); err != nil {
			return fmt.Errorf("gate %s: %w", dir, err)
		}
	}
	if err := os.Chmod(dir, guestDirMode); err != nil {
		return fmt.Errorf("gate %s: %w", dir, err)
	}
	return nil
}

// rootGroup is the host gid of def's root: its own range's first id for an
// isolated guest, the shared range's otherwise (a privileged container or
// a VM needs none; they keep the shared one, as before isolated maps).
func rootGroup(def *guest.Definition) uint32 {
	if m, ok := def.IDMap(); ok {
		return m.HostBase
	}
	return idmap.HostBase
}

// storedRootGroup is rootGroup of a guest on disk, whose definition may
// not load (a broken guest keeps the range it claims).
func storedRootGroup(store guest.Store, name string) uint32 {
	if def, err := store.Load(name); err == nil {
		return rootGroup(def)
	}
	if base := store.IDMapBase(name); base != 0 {
		return base
	}
	return idmap.HostBase
}

// repairModes makes the state dir's own directories, and every guest's,
// no looser than they must be: a state dir from an older polyvisor, or one
// an admin opened up, is tightened at start.
func repairModes(stateDir, guestsDir, templatesDir string) error {
	for dir, mode := range map[string]os.FileMode{stateDir: searchOnlyMode, guestsDir: searchOnlyMode, templatesDir: templateDirMode} {
		if err := os.MkdirAll(dir, mode); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	entries, err := os.ReadDir(guestsDir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsDir() {
			group := storedRootGroup(guest.FileStore{Dir: guestsDir}, e.Name())
			if err := gateGuestDir(filepath.Join(guestsDir, e.Name()), group); err != nil {
				return fmt.Errorf("state dir: %w", err)
			}
		}
	}
	return nil
}
