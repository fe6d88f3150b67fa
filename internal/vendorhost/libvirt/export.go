package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// stallTimeout ends a disk download that has moved no byte for this long.
const stallTimeout = time.Minute

// Export writes a stopped domain into dir as its domain XML beside a copy
// of each of its disks, the XML's disk sources rewritten to the copies'
// names (relative to the XML), so that polyvisor's importer reads it with
// the guest's CPUs, memory, firmware and NICs with their MACs. A disk that
// is a storage pool volume is downloaded through libvirt
// (virStorageVolDownload), from any host; a plain file is read directly,
// which only a local (unix socket) host allows. Block, network and other
// disks are refused with the fix. Exported.Path is the XML's path.
func (h *Host) Export(ctx context.Context, name, dir string, progress vendorhost.Progress) (_ vendorhost.Exported, err error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	if h.isLXC() {
		return vendorhost.Exported{}, fmt.Errorf("%w: export %s: an LXC domain is a container on the host's directory tree, not a VM with disks; import its root tree as a container instead", vendorhost.ErrNotSupported, name)
	}
	d, err := h.lookup(ctx, name)
	if err != nil {
		return vendorhost.Exported{}, err
	}
	if err := h.requireStopped(ctx, d, "export"); err != nil {
		return vendorhost.Exported{}, err
	}
	var xml string
	err = h.c.call(ctx, "definition of "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		xml, err = l.DomainGetXMLDesc(d, golibvirt.DomainXMLInactive)
		return err
	})
	if err != nil {
		return vendorhost.Exported{}, err
	}
	g, err := guestOf(xml)
	if err != nil {
		return vendorhost.Exported{}, fmt.Errorf("export %s: %w", name, err)
	}
	g.State = vendorhost.StateStopped
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(xml); err != nil {
		return vendorhost.Exported{}, fmt.Errorf("%w: export %s: domain XML: %w", vendorhost.ErrInvalid, name, err)
	}
	// Everything written here goes again on failure; dir is the caller's.
	var made []string
	defer func() {
		if err != nil {
			for _, p := range made {
				os.Remove(p)
			}
		}
	}()
	base := safeName(name)
	n := 0
	if dom.Devices != nil {
		for i := range dom.Devices.Disks {
			disk := &dom.Devices.Disks[i]
			if disk.Device != "" && disk.Device != "disk" {
				continue // media: the importer warns and leaves them out
			}
			n++
			format := "raw"
			if disk.Driver != nil && disk.Driver.Type != "" {
				format = disk.Driver.Type
			}
			target := fmt.Sprintf("%s-disk%d.%s", base, n, format)
			path := filepath.Join(dir, target)
			made = append(made, path)
			if err := h.copyDisk(ctx, name, disk, path, progress); err != nil {
				return vendorhost.Exported{}, err
			}
			disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: target}}
			if disk.Driver == nil {
				disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
			}
			disk.Driver.Type = format
			disk.BackingStore = nil
		}
	}
	if n == 0 {
		return vendorhost.Exported{}, fmt.Errorf("%w: export %s: it has no disk to carry", vendorhost.ErrNotSupported, name)
	}
	// The memory the guest runs with, where the importer reads it.
	if dom.CurrentMemory != nil && dom.CurrentMemory.Value != 0 {
		dom.Memory = &libvirtxml.DomainMemory{Value: dom.CurrentMemory.Value, Unit: dom.CurrentMemory.Unit}
	}
	out, err := dom.Marshal()
	if err != nil {
		return vendorhost.Exported{}, fmt.Errorf("export %s: %w", name, err)
	}
	path := filepath.Join(dir, base+".xml")
	made = append(made, path)
	if err := writeNew(path, []byte(out)); err != nil {
		return vendorhost.Exported{}, fmt.Errorf("export %s: %w", name, err)
	}
	return vendorhost.Exported{Path: path, Guest: g}, nil
}

// copyDisk copies one disk to path: a pool volume through libvirt, a file
// directly when the host is local.
func (h *Host) copyDisk(ctx context.Context, name string, disk *libvirtxml.DomainDisk, path string, progress vendorhost.Progress) error {
	label := diskPath(disk.Source)
	if disk.Target != nil && disk.Target.Dev != "" {
		label = disk.Target.Dev + " (" + label + ")"
	}
	src := disk.Source
	if src == nil || (src.File == nil && src.Volume == nil) {
		return fmt.Errorf("%w: export %s: disk %s is not a file or storage volume: copy it into an image file on the host (qemu-img convert -O qcow2 ...), attach that, and export again", vendorhost.ErrNotSupported, name, label)
	}
	var vol golibvirt.StorageVol
	var allocation uint64
	err := h.c.call(ctx, "export "+name+": disk "+label, callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		if src.Volume != nil {
			var p golibvirt.StoragePool
			if p, err = l.StoragePoolLookupByName(src.Volume.Pool); err != nil {
				return err
			}
			vol, err = l.StorageVolLookupByName(p, src.Volume.Volume)
		} else {
			vol, err = l.StorageVolLookupByPath(src.File.File)
		}
		if err != nil {
			return err
		}
		// The file's size: a volume's download is its file's bytes.
		_, _, allocation, err = l.StorageVolGetInfo(vol)
		return err
	})
	switch {
	case err == nil:
		return h.download(ctx, name, label, vol, int64(allocation), path, progress)
	case !errors.Is(err, vendorhost.ErrNotFound):
		return err
	case src.Volume != nil:
		return err
	case h.c.t.transport != "unix":
		return fmt.Errorf("%w: export %s: disk %s is a file outside every storage pool of %s, and libvirt sends only pool volumes: define a pool on its directory (virsh pool-define-as NAME dir --target DIR; virsh pool-start NAME) and export again", vendorhost.ErrNotSupported, name, label, h.c.t.display)
	}
	return copyLocal(ctx, src.File.File, path, "copy "+label, progress)
}

// download streams a volume into path on a connection of its own, which
// ends the download when ctx does or when it stalls.
func (h *Host) download(ctx context.Context, name, label string, vol golibvirt.StorageVol, total int64, path string, progress vendorhost.Progress) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	defer f.Close()
	sess, err := dial(ctx, h.c.t, h.c.creds)
	if err != nil {
		return fmt.Errorf("export %s: disk %s: %w", name, label, err)
	}
	defer sess.close()
	phase := "download " + label
	w := &countingWriter{w: f, phase: phase, total: total, progress: progress}
	w.last.Store(time.Now().UnixNano())
	done := make(chan error, 1)
	go func() { done <- sess.lv.StorageVolDownload(vol, w, 0, 0, 0) }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("export %s: disk %s: %w", name, label, h.c.mapError(err))
			}
			if w.err != nil {
				return fmt.Errorf("export %s: disk %s: %w", name, label, w.err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("export %s: %w", name, err)
			}
			progress(phase, w.n, w.n)
			return nil
		case <-ctx.Done():
			sess.conn.Close()
			<-done
			return fmt.Errorf("export %s: disk %s: %w", name, label, ctx.Err())
		case <-tick.C:
			if time.Since(time.Unix(0, w.last.Load())) > stallTimeout {
				sess.conn.Close()
				<-done
				return fmt.Errorf("%w: export %s: disk %s: libvirt at %s sent nothing for %s", vendorhost.ErrUnreachable, name, label, h.c.t.display, stallTimeout)
			}
		}
	}
}

// countingWriter reports a download's progress.
type countingWriter struct {
	w        io.Writer
	n        int64
	total    int64
	phase    string
	progress vendorhost.Progress
	last     atomic.Int64 // unix nanoseconds of the last write
	err      error        // the first write error
}

// Write never fails: go-libvirt's stream reader returns on a write error
// while the connection's reader may be blocked handing it the next packet,
// which deadlocks the connection. The first error is kept and reported
// once the stream ends; later data is dropped.
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return len(p), nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	c.last.Store(time.Now().UnixNano())
	c.progress(c.phase, c.n, c.total)
	return len(p), nil
}

// copyLocal copies a local file, checking ctx between chunks.
func copyLocal(ctx context.Context, src, dst, phase string, progress vendorhost.Progress) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("%s: %w", phase, err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", phase, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", phase, err)
	}
	defer out.Close()
	buf := make([]byte, 4<<20)
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		n, rerr := in.Read(buf)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				return fmt.Errorf("%s: %w", phase, err)
			}
			done += int64(n)
			progress(phase, done, info.Size())
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%s: %w", phase, rerr)
		}
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("%s: %w", phase, err)
	}
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// safeName is a domain name made fit for a file name.
func safeName(name string) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name)
	if s == "" || s[0] == '.' {
		s = "domain" + s
	}
	return s
}
