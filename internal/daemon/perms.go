package daemon

import (
	"fmt"
	"os"
	"path/filepath"

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

// gateGuestDir gives a guest's directory its owner and mode.
func gateGuestDir(dir string) error {
	if err := os.Chown(dir, 0, idmap.HostBase); err != nil {
		return fmt.Errorf("gate %s: %w", dir, err)
	}
	if err := os.Chmod(dir, guestDirMode); err != nil {
		return fmt.Errorf("gate %s: %w", dir, err)
	}
	return nil
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
			if err := gateGuestDir(filepath.Join(guestsDir, e.Name())); err != nil {
				return fmt.Errorf("state dir: %w", err)
			}
		}
	}
	return nil
}
