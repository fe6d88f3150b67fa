package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomicReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "guest.yaml")
	for _, content := range []string{"one\n", "two\n"} {
		if err := WriteFileAtomic(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

func TestWriteFileAtomicFailsInMissingDir(t *testing.T) {
	if err := WriteFileAtomic(filepath.Join(t.TempDir(), "no", "x"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestRemoveAllAtomic(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "guest")
	os.MkdirAll(filepath.Join(victim, "disks", "upper"), 0o755)
	os.WriteFile(filepath.Join(victim, "disks", "upper", "f"), []byte("x"), 0o600)
	if err := RemoveAllAtomic(victim); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("left %v behind", entries)
	}
	if err := RemoveAllAtomic(victim); err != nil {
		t.Fatalf("removing a missing path: %v", err)
	}
}
