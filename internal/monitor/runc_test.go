package monitor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), InitPidName)
	os.WriteFile(path, []byte("123"), 0o600)
	if pid, err := readPidFile(path); err != nil || pid != 123 {
		t.Fatalf("got %d %v", pid, err)
	}
	os.WriteFile(path, []byte("zero"), 0o600)
	if _, err := readPidFile(path); err == nil {
		t.Fatal("a bad pid file was accepted")
	}
}
