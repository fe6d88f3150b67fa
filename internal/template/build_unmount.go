package template

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// unmountUnder detaches every mount at or below dir, deepest first. debootstrap mounts /proc
// and /sys (and in some setups bind-mounts /dev) inside its target and does not always get
// to undo them when it fails or is killed.
func unmountUnder(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	under, err := fsutil.MountsUnder(dir)
	if err != nil {
		return err
	}
	// Longer paths are deeper; unmount children before their parents.
	slices.SortFunc(under, func(a, b string) int { return len(b) - len(a) })
	for _, m := range under {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return nil
}
