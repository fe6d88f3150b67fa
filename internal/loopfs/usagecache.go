package loopfs

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// settle is how old an image's last change must be before its usage is
// remembered: a write in the same tick of the file system's clock as the
// read would leave the timestamps as they were (git's "racy" files).
const settle = 2 * time.Second

// UsageCache remembers the usage of unmounted images, which cannot change
// until their file does. Listing guests asks the usage of every one, and
// reading a superblock costs five system calls (open, fcntl, fstat, pread,
// close) where checking that the file is unchanged costs one stat. A
// mounted image is always read afresh: its free space moves with every
// write. The zero value is ready to use.
type UsageCache struct {
	mu    sync.Mutex
	known map[string]cachedUsage // by image path
	now   func() time.Time       // time.Now when nil; tests move it
}

type cachedUsage struct {
	id    fileID
	usage Usage
}

// fileID is what changes when anything writes a file, or replaces it.
type fileID struct {
	dev, ino     uint64
	size, blocks int64
	mtime, ctime unix.Timespec
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, blocks: st.Blocks, mtime: st.Mtim, ctime: st.Ctim}
}

// UsageOf is the package's UsageOf, answered from memory when image is not
// mounted on target and has not changed since it was last read.
func (c *UsageCache) UsageOf(image, target string) (Usage, error) {
	var st, at unix.Stat_t
	if unix.Stat(image, &st) != nil {
		return UsageOf(image, target) // for its error
	}
	if unix.Stat(target, &at) == nil && at.Dev != st.Dev {
		return UsageOf(image, target)
	}
	id := idOf(&st)
	c.mu.Lock()
	e, ok := c.known[image]
	c.mu.Unlock()
	if ok && e.id == id {
		return e.usage, nil
	}
	u, err := UsageOf(image, target)
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	if err != nil || !settled(&st, now()) {
		return u, err
	}
	c.mu.Lock()
	if c.known == nil {
		c.known = map[string]cachedUsage{}
	}
	c.known[image] = cachedUsage{id: id, usage: u}
	c.mu.Unlock()
	return u, nil
}

// Forget drops what the cache holds about image, once it is deleted.
func (c *UsageCache) Forget(image string) {
	c.mu.Lock()
	delete(c.known, image)
	c.mu.Unlock()
}

// settled reports whether the file st describes last changed long enough
// before now that a later change must show in its timestamps.
func settled(st *unix.Stat_t, now time.Time) bool {
	last := time.Unix(st.Mtim.Unix())
	if c := time.Unix(st.Ctim.Unix()); c.After(last) {
		last = c
	}
	return now.Sub(last) > settle
}
