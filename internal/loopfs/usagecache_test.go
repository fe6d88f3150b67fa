package loopfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// TestUsageCacheFollowsTheImage: the cache answers what UsageOf reads,
// remembers an unmounted image that has settled, reads a mounted one
// afresh, and notices when the image changed behind it.
func TestUsageCacheFollowsTheImage(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	image, target := filepath.Join(dir, "layer.img"), filepath.Join(dir, "layer")
	if err := os.Mkdir(target, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := Make(ctx, image, 32<<20, ""); err != nil {
		t.Fatal(err)
	}
	// A clock an hour ahead: the new image counts as settled at once.
	c := &UsageCache{now: func() time.Time { return time.Now().Add(time.Hour) }}
	remembered := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.known[image]
		return ok
	}
	same := func(when string) Usage {
		t.Helper()
		want, err := UsageOf(image, target)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.UsageOf(image, target)
		if err != nil || got != want {
			t.Fatalf("%s: cached usage %+v, %v; read from the image %+v", when, got, err, want)
		}
		return got
	}

	empty := same("new image")
	if !remembered() {
		t.Fatal("a settled, unmounted image was not remembered")
	}
	same("asked again")

	if err := Mount(ctx, image, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsutil.Unmount(target) })
	if err := fill(filepath.Join(target, "fill"), 4<<20); err != nil {
		t.Fatal(err)
	}
	if u := same("mounted, 4 MiB written"); u.Used < empty.Used+4<<20 {
		t.Fatalf("mounted usage %d after writing 4 MiB, want at least %d", u.Used, empty.Used+4<<20)
	}
	if err := fsutil.Unmount(target); err != nil {
		t.Fatal(err)
	}
	waitReleased(t, image)
	if u := same("unmounted again"); u.Used < empty.Used+4<<20 {
		t.Fatalf("usage %d after unmount, want at least %d: the cache kept the old figure", u.Used, empty.Used+4<<20)
	}

	// With the real clock, an image written just now is read every time.
	fresh := &UsageCache{}
	if _, err := fresh.UsageOf(image, target); err != nil {
		t.Fatal(err)
	}
	if len(fresh.known) != 0 {
		t.Fatal("an image changed just now was remembered")
	}

	c.Forget(image)
	if remembered() {
		t.Fatal("Forget kept the image")
	}
	if _, err := c.UsageOf(filepath.Join(dir, "missing.img"), target); err == nil {
		t.Fatal("the usage of a missing image was not an error")
	}
}
