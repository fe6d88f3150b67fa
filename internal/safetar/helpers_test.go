package safetar

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// ent is one tar entry to build: a header and, for files, a body.
type ent struct {
	hdr  tar.Header
	body string
}

func file(name, body string) ent {
	return ent{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: testTime}, body: body}
}

func dir(name string) ent {
	return ent{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: testTime}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: testTime}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, ModTime: testTime}}
}

func special(name string, typ byte) ent {
	return ent{hdr: tar.Header{Name: name, Typeflag: typ, Mode: 0o600, Devmajor: 1, Devminor: 3, ModTime: testTime}}
}

func buildTar(tb testing.TB, entries ...ent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			tb.Fatalf("writing header %q: %v", hdr.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			tb.Fatalf("writing body %q: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a temp directory holding dest and a sibling "outside" with a
// canary file, to prove an extraction never reaches past dest.
type sandbox struct {
	base, dest, outside string
	before              string
}

func newSandbox(t testing.TB, base string) *sandbox {
	t.Helper()
	s := &sandbox{base: base, dest: filepath.Join(base, "dest"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.dest, s.outside, filepath.Join(s.outside, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "etc", "passwd"), []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.before = snapshot(t, base, s.dest)
	return s
}

// checkOutside fails the test when anything beside dest changed.
func (s *sandbox) checkOutside(t testing.TB) {
	t.Helper()
	if after := snapshot(t, s.base, s.dest); after != s.before {
		t.Fatalf("extraction changed things outside dest:\nbefore:\n%s\nafter:\n%s", s.before, after)
	}
}

func (s *sandbox) extract(t testing.TB, data []byte, opts Options) (Result, error) {
	t.Helper()
	return Extract(context.Background(), bytes.NewReader(data), s.dest, opts)
}

// snapshot lists everything under base except the skip subtree, with mode,
// owner, size, link count, mtime and contents of small files.
func snapshot(t testing.TB, base, skip string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			lines = append(lines, "dest/")
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d size=%d nlink=%d mtime=%d", p, info.Mode(), st.Uid, st.Gid, info.Size(), st.Nlink, info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q", b)
		}
		if p != base {
			lines = append(lines, line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func wantUnsafe(t *testing.T, err error, entry string) {
	t.Helper()
	if err == nil {
		t.Fatalf("extraction succeeded, want a refusal naming %q", entry)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%q", entry)) {
		t.Fatalf("error %q does not name entry %q", err, entry)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error spans several lines: %q", err)
	}
}
