package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// ReadRootTree implements driver.TreeReader. A stopped overlay guest's
// tree is its upper dir over the template's, mounted read-only for the
// call (both as lower layers: no work dir, nothing can change), so its
// whiteouts hide what the guest deleted.
func (d *Driver) ReadRootTree(ctx context.Context, def *guest.Definition, fn func(root string, toGuest idmap.ShiftFunc) error) error {
	if initIdentity(def).Alive() || d.ownMonitorAlive(def) {
		return fmt.Errorf("%w: guest %s is running; stop it first, so that its files hold still", api.ErrConflict, def.Name)
	}
	var toGuest idmap.ShiftFunc
	if m, ok := def.IDMap(); ok {
		toGuest = idmap.ShiftDown(m)
	}
	if def.Rootfs == guest.RootfsCopy {
		return fn(filepath.Join(d.guestDir(def), copyRootfs), toGuest)
	}
	target, err := os.MkdirTemp(d.guestDir(def), ".tree-")
	if err != nil {
		return fmt.Errorf("read %s: %w", def.Name, err)
	}
	defer os.Remove(target)
	return d.withLayer(ctx, def, func() error {
		// An isolated guest's upper dir holds its own range's ids: the
		// template goes under it through an idmapped mount, as at start.
		lower, err := os.MkdirTemp(d.guestDir(def), ".template-")
		if err != nil {
			return fmt.Errorf("read %s: %w", def.Name, err)
		}
		defer os.Remove(lower)
		tmpl, err := d.templateLower(ctx, def, lower)
		if err != nil {
			return fmt.Errorf("read %s: %w", def.Name, err)
		}
		defer fsutil.Unmount(lower)
		opts := fmt.Sprintf("lowerdir=%s:%s", filepath.Join(d.guestDir(def), upperRel(def)), tmpl) + overlayOptions(def)
		if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, opts); err != nil {
			return fmt.Errorf("read %s: mount its tree: %w", def.Name, err)
		}
		defer fsutil.Unmount(target)
		return fn(target, toGuest)
	})
}
