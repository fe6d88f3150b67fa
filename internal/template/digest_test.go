package template

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func makeDigestTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc/sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("guest\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/sub/empty"), nil, 0o600))
	must(os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hostname.hardlink")))
	must(os.Symlink("hostname", filepath.Join(root, "etc/link")))
	return root
}

func mustDigest(t *testing.T, root string) string {
	t.Helper()
	digest, err := Digest(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	return digest
}

func TestDigestIsStableAndIgnoresTimes(t *testing.T) {
	root := makeDigestTree(t)
	first := mustDigest(t, root)
	if len(first) != len("sha256:")+64 || first[:7] != "sha256:" {
		t.Fatalf("digest %q is not sha256:<hex>", first)
	}
	if second := mustDigest(t, root); second != first {
		t.Fatalf("two digests of one tree differ: %s, %s", first, second)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, rel := range []string{".", "etc", "etc/hostname"} {
		if err := os.Chtimes(filepath.Join(root, rel), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if again := mustDigest(t, root); again != first {
		t.Fatalf("changing times changed the digest")
	}
	// Same contents, modes and owners at another path: same digest.
	other := makeDigestTree(t)
	if got := mustDigest(t, other); got != first {
		t.Fatalf("identical trees at two paths differ: %s, %s", first, got)
	}
}

func TestDigestChangesWithTheTree(t *testing.T) {
	changes := map[string]func(root string) error{
		"contents": func(root string) error {
			return os.WriteFile(filepath.Join(root, "etc/sub/empty"), []byte("x"), 0o600)
		},
		"contents of equal size": func(root string) error {
			return os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("GUEST\n"), 0o644)
		},
		"mode": func(root string) error {
			return os.Chmod(filepath.Join(root, "etc/sub/empty"), 0o644)
		},
		"setuid": func(root string) error {
			return os.Chmod(filepath.Join(root, "etc/sub/empty"), 0o600|os.ModeSetuid)
		},
		"symlink target": func(root string) error {
			os.Remove(filepath.Join(root, "etc/link"))
			return os.Symlink("sub", filepath.Join(root, "etc/link"))
		},
		"name": func(root string) error {
			return os.Rename(filepath.Join(root, "etc/sub/empty"), filepath.Join(root, "etc/sub/empty2"))
		},
		"new empty directory": func(root string) error {
			return os.Mkdir(filepath.Join(root, "etc/new"), 0o755)
		},
	}
	if os.Geteuid() == 0 {
		changes["owner"] = func(root string) error {
			return os.Lchown(filepath.Join(root, "etc/sub/empty"), 1000000, 1000000)
		}
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			root := makeDigestTree(t)
			before := mustDigest(t, root)
			if err := change(root); err != nil {
				t.Fatal(err)
			}
			if after := mustDigest(t, root); after == before {
				t.Fatalf("digest did not change")
			}
		})
	}
}

func TestDigestStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Digest(ctx, makeDigestTree(t)); err == nil {
		t.Fatal("Digest with a cancelled context succeeded")
	}
}
