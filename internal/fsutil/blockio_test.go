package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

// The block device under the file system holding the test's files has
// written what the test wrote and synced; a file system of no block
// device (proc) has no block I/O to tell.
func TestBlockIOCountsASyncedWrite(t *testing.T) {
	dir, err := os.MkdirTemp("/var/tmp", "blockio-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_, before, err := BlockIO(dir)
	if err != nil {
		t.Skipf("/var/tmp is on no block device here: %v", err)
	}
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, after, err := BlockIO(dir)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 4<<20 {
		t.Fatalf("4 MiB written and synced; the device counted %d bytes more", after-before)
	}
	if _, _, err := BlockIO("/proc/self"); err == nil {
		t.Fatal("proc's block I/O read without an error")
	}
}
