package qemu

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/diskimage"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// inspectImage runs qemu-img info on one of the driver's own qcow2 images.
func inspectImage(ctx context.Context, path string) (diskimage.Info, error) {
	return diskimage.Inspect(ctx, path, "qcow2")
}

// ResizeDisk implements driver.DiskResizer: qemu-img resize while the
// guest is stopped (its sysinit grows the file system at next boot);
// block_resize over QMP while it runs, then the guest's agent grows the
// file system at once.
func (d *Driver) ResizeDisk(ctx context.Context, def *guest.Definition, name string) (string, error) {
	disk, ok := def.Disk(name)
	if !ok {
		return "", fmt.Errorf("%w: %s has no disk %q", api.ErrNotFound, def.Name, name)
	}
	path := filepath.Join(d.guestDir(def), disk.Path)
	size := int64(disk.Size)
	if !monitored.Process(def).Alive() {
		if err := runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: []string{"resize", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10)}}); err != nil {
			return "", fmt.Errorf("grow disk %s of %s: %w", name, def.Name, err)
		}
		return "next-start", nil
	}
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return "", fmt.Errorf("grow disk %s of %s: %w", name, def.Name, err)
	}
	err = m.Run(ctx, qmp.BlockResize{Device: driveID(name), Size: size}, nil)
	m.Close()
	if err != nil {
		return "", fmt.Errorf("grow disk %s of %s: %w", name, def.Name, err)
	}
	if name != "root" {
		return "live", nil
	}
	// The disk is grown; if the guest cannot follow now, its next boot does.
	var out bytes.Buffer
	c, err := d.execAgent(ctx, def)
	if err == nil {
		var code int
		code, err = c.Exec(ctx, agent.ExecRequest{Command: []string{vmimage.GuestAgent, "grow-root", "--disk-size", strconv.FormatInt(size, 10)}}, nil, &out, &out, nil)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit status %d: %s", code, runcmd.LastLines(out.String(), 2))
		}
	}
	if err != nil {
		d.log.Warn("the guest did not grow its root file system; it will at next boot", "guest", def.Name, "err", err)
		return "next-start", nil
	}
	return "live", nil
}

// driveID is the QEMU drive id of a guest disk.
func driveID(name string) string { return name }
