package hostreq

import (
	"os"
	"path/filepath"
	"testing"
)

// Own finds one of polyvisor's binaries beside the running executable
// first, then on $PATH, and says "" when neither has it.
func TestOwnLooksBesideTheExecutableThenOnPath(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	onPath := t.TempDir()
	t.Setenv("PATH", onPath)
	write := func(path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := Own("polyvisor-own-test"); got != "" {
		t.Fatalf("Own found %q where there is none", got)
	}
	write(filepath.Join(onPath, "polyvisor-own-test"))
	if got := Own("polyvisor-own-test"); got != filepath.Join(onPath, "polyvisor-own-test") {
		t.Fatalf("Own = %q, want the one on $PATH", got)
	}
	beside := filepath.Join(filepath.Dir(self), "polyvisor-own-test")
	write(beside)
	t.Cleanup(func() { os.Remove(beside) })
	if got := Own("polyvisor-own-test"); got != beside {
		t.Fatalf("Own = %q, want the one beside the executable, %s", got, beside)
	}
}
