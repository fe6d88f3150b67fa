package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/layout"
)

// TestLeftoversAreFound: the checker the crash suite relies on finds each
// kind of leftover an interrupted operation may leave, and nothing in a
// clean state dir.
func TestLeftoversAreFound(t *testing.T) {
	l := layout.New(t.TempDir())
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(l.GuestDir("clean"), "guest.yaml"), "name: clean\nstatus:\n  state: stopped\n")
	write(filepath.Join(l.GuestDir("clean"), "snapshots", "s1", "snapshot.yaml"), "name: s1\n")
	write(filepath.Join(l.TemplatesDir(), ".cache", "x.deb"), "")
	write(filepath.Join(l.TemplatesDir(), "busybox", "template.yaml"), "id: busybox\n")
	write(filepath.Join(l.NetworkDir("n1"), "network.yaml"), "name: n1\n")
	if bad := leftovers(l); len(bad) != 0 {
		t.Fatalf("a clean state dir: %q", bad)
	}
	write(filepath.Join(l.GuestDir("mid"), "guest.yaml"), "name: mid\nstatus:\n  state: running\n  intent: delete\n")
	write(filepath.Join(l.GuestsDir(), ".creating-x-1", "guest.yaml"), "")
	write(filepath.Join(l.GuestDir("clean"), "snapshots", "s2", "upper", "f"), "")
	write(filepath.Join(l.GuestDir("clean"), "disks", ".restore-1", "tree", "f"), "")
	write(filepath.Join(l.TemplatesDir(), "i1", "pending"), "")
	write(filepath.Join(l.NetworkDir("n2"), "network.yaml"), "name: n2\nintent: create\n")
	bad := leftovers(l)
	for _, want := range []string{"guest mid: intent delete", ".creating-x-1", "snapshot s2 of clean has no record", ".restore-1", "template i1 is still marked pending", "network n2: intent create"} {
		if !strings.Contains(strings.Join(bad, "\n"), want) {
			t.Errorf("leftovers did not find %q: %q", want, bad)
		}
	}
}
