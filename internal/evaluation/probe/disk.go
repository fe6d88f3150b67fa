package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const (
	blockSize = 1 << 20 // disk.seq_*'s requests
	pageSize  = 4 << 10 // disk.rand_read_4k's and disk.fsync's
)

// isDisk says whether the workload called name uses the disk file.
func isDisk(name string) bool {
	return name == DiskSeqWrite || name == DiskSeqRead || name == DiskRandRead || name == DiskFsync
}

// diskFile is the file the disk workloads share: the first one creates
// it in the runner's directory and Run removes it.
type diskFile struct {
	path   string
	f      *os.File // opened with O_DIRECT unless the file system refused it
	direct bool
	size   int64
	filled bool   // written from start to end
	buf    []byte // blockSize, page-aligned as O_DIRECT wants (mmap'd)
	note   string // why the page cache was used, if it was, and memNote
	// memNote says that the file system is memory, if it is.
	memNote string
}

// file returns the runner's disk file, creating it on the first call.
func (r *runner) file() (*diskFile, error) {
	if r.disk == nil && r.diskErr == nil {
		dir, fsType := r.diskDir()
		r.disk, r.diskErr = openDisk(dir, fsType, r.size.fileSize, r.tryDirect)
	}
	return r.disk, r.diskErr
}

// openDisk creates a file of size bytes (not yet written) in dir, opened
// with O_DIRECT if tryDirect and the file system takes it. Where the file
// system refuses O_DIRECT (EINVAL: tmpfs and overlayfs on some kernels,
// 9p, FUSE) it opens the file for buffered I/O, which the note says.
func openDisk(dir, fsType string, size int64, tryDirect bool) (d *diskFile, err error) {
	tmp, err := os.CreateTemp(dir, "polyvisor-probe-*.dat")
	if err != nil {
		return nil, fmt.Errorf("create the test file: %w", err)
	}
	d = &diskFile{path: tmp.Name(), size: size}
	tmp.Close()
	if fsType == "tmpfs" || fsType == "ramfs" {
		d.memNote = fsType + " is memory: no disk is involved"
		d.note = d.memNote
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.buf, err = unix.Mmap(-1, 0, blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("map an aligned buffer: %w", err)
	}
	fillRandom(d.buf)

	if tryDirect {
		// Some file systems take O_DIRECT at open and refuse it at the
		// first read or write: try both.
		d.f, err = os.OpenFile(d.path, os.O_RDWR|unix.O_DIRECT, 0)
		if err == nil {
			if _, err = d.f.WriteAt(d.buf, 0); err == nil {
				d.direct = true
				return d, nil
			}
			d.f.Close()
			d.f = nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return nil, err
		}
	}
	if d.f, err = os.OpenFile(d.path, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	// Readahead would turn random reads into sequential ones.
	if err = unix.Fadvise(int(d.f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		return nil, fmt.Errorf("posix_fadvise: %w", err)
	}
	refused := "O_DIRECT refused by the file system"
	if !tryDirect {
		refused = "O_DIRECT not tried"
	}
	if fsType != "" {
		refused += " (" + fsType + ")"
	}
	d.note = refused + ": buffered I/O instead, writes end with fdatasync, and the file is dropped from the page cache (posix_fadvise DONTNEED) before reads"
	if d.memNote != "" {
		d.note += "; " + d.memNote
	}
	return d, nil
}

// close removes the file and frees the buffer.
func (d *diskFile) close() {
	if d.f != nil {
		d.f.Close()
	}
	os.Remove(d.path)
	if d.buf != nil {
		unix.Munmap(d.buf)
	}
}

// write writes the whole file in blockSize requests and waits, with
// fdatasync, until it is on stable storage.
func (d *diskFile) write() error {
	for off := int64(0); off < d.size; off += blockSize {
		if _, err := d.f.WriteAt(d.buf, off); err != nil {
			return err
		}
	}
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	d.filled = true
	return nil
}

// fill writes the file unless it is already written.
func (d *diskFile) fill() error {
	if d.filled {
		return nil
	}
	return d.write()
}

// read reads the whole file in blockSize requests.
func (d *diskFile) read() error {
	if err := d.dropCache(); err != nil {
		return err
	}
	for off := int64(0); off < d.size; off += blockSize {
		if _, err := d.f.ReadAt(d.buf, off); err != nil {
			return err
		}
	}
	return nil
}

// dropCache drops the file from the page cache, so that buffered reads
// go to the disk; with O_DIRECT there is nothing to drop.
func (d *diskFile) dropCache() error {
	if d.direct {
		return nil
	}
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	if err := unix.Fadvise(int(d.f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("posix_fadvise: %w", err)
	}
	return nil
}

// passes measures a workload that goes once over the whole file per run,
// in MiB/s.
func (r *runner) passes(ctx context.Context, pass func(d *diskFile) error, before func(d *diskFile) error) ([]float64, string, error) {
	d, err := r.file()
	if err != nil {
		return nil, "", err
	}
	if err := before(d); err != nil {
		return nil, d.note, err
	}
	runs, err := measure(ctx, r.size.runs, func() (float64, error) {
		start := time.Now()
		if err := pass(d); err != nil {
			return 0, err
		}
		return float64(d.size) / (1 << 20) / time.Since(start).Seconds(), nil
	})
	return runs, d.note, err
}

// diskSeqWrite measures MiB/s writing the file in 1 MiB requests, the
// last one followed by fdatasync.
func diskSeqWrite(ctx context.Context, r *runner) ([]float64, string, error) {
	return r.passes(ctx, (*diskFile).write, func(*diskFile) error { return nil })
}

// diskSeqRead measures MiB/s reading the file in 1 MiB requests.
func diskSeqRead(ctx context.Context, r *runner) ([]float64, string, error) {
	return r.passes(ctx, (*diskFile).read, (*diskFile).fill)
}

// diskRandRead measures 4 KiB reads a second at random page-aligned
// offsets of the file.
func diskRandRead(ctx context.Context, r *runner) ([]float64, string, error) {
	d, err := r.file()
	if err != nil {
		return nil, "", err
	}
	if err := d.fill(); err != nil {
		return nil, d.note, err
	}
	pages, x := uint64(d.size/pageSize), uint64(0x2545F4914F6CDD1D)
	kernel := func(n int) error {
		if err := d.dropCache(); err != nil {
			return err
		}
		for range n {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			if _, err := d.f.ReadAt(d.buf[:pageSize], int64(x%pages)*pageSize); err != nil {
				return err
			}
		}
		return nil
	}
	runs, err := r.timed(ctx, kernel, perSecond(1))
	return runs, d.note, err
}

// diskFsync measures microseconds per 4 KiB write and fdatasync, the
// commit of a database or a log, through the page cache as they do.
func diskFsync(ctx context.Context, r *runner) ([]float64, string, error) {
	d, err := r.file()
	if err != nil {
		return nil, "", err
	}
	if err := d.fill(); err != nil {
		return nil, "", err
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY, 0)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	pages, i := d.size/pageSize, int64(0)
	kernel := func(n int) error {
		for range n {
			if _, err := f.WriteAt(d.buf[:pageSize], i%pages*pageSize); err != nil {
				return err
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				return fmt.Errorf("fdatasync: %w", err)
			}
			i++
		}
		return nil
	}
	runs, err := r.timed(ctx, kernel, each(time.Microsecond))
	return runs, d.memNote, err
}

// fsNames names the file systems a probe is likely to find, by statfs
// magic number.
var fsNames = map[int64]string{
	0xEF53:     "ext4", // and ext2, ext3
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x2FC12FC1: "zfs",
	0xF2F52010: "f2fs",
	0x01021994: "tmpfs",
	0x858458F6: "ramfs",
	0x794C7630: "overlayfs",
	0x01021997: "9p",
	0x65735546: "fuse", // virtiofs too
	0x6969:     "nfs",
}

// fsName returns the type of dir's file system, "" where statfs fails.
func fsName(dir string) string {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return ""
	}
	// Statfs_t.Type is int64, uint32 or int32 by GOARCH; the magic numbers are 32 bits.
	if name, ok := fsNames[int64(uint32(st.Type))]; ok {
		return name
	}
	return fmt.Sprintf("%#x", st.Type)
}
