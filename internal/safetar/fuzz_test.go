package safetar

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzExtract builds tar archives from fuzzed entry lists and extracts them
// with the most permissive options the importer uses, checking that nothing
// ever appears or changes beside the destination.
//
// The fuzzed bytes describe entries, not raw tar: every tar header carries a
// checksum, so byte mutations of a raw archive are nearly all rejected by
// archive/tar before they reach the path handling under test, and the
// fuzzer spends a short run minimizing kilobyte-sized inputs. The seeds are
// the hostile archives of the unit tests in this encoding.
func FuzzExtract(f *testing.F) {
	base := fuzzBase(f)
	outside := newSandbox(f, base).outside
	seeds := [][]ent{
		{dir("bin"), file("bin/sh", "#!"), symlink("bin/ash", "sh"), hardlink("bin/ln", "bin/sh"), special("p", tar.TypeFifo)},
		{file("../evil", "x")},
		{file("/abs", "x")},
		{dir("a"), file("a/../../x", "x")},
		{symlink("a", "/"), file("a/etc/passwd", "x")},
		{symlink("a", outside), file("a/etc/passwd", "x"), hardlink("h", "a/etc/passwd")},
		{symlink("l", "../../outside"), file("l/etc/passwd", "x")},
		{symlink("l", "../outside"), file("l/etc/passwd", "x")},
		{dir("d"), symlink("d/l", "../../outside"), file("d/l/etc/passwd", "x")},
		{hardlink("h", "../../outside/etc/passwd")},
		{hardlink("h", filepath.Join(outside, "etc/passwd"))},
		{symlink("f", filepath.Join(outside, "etc/passwd")), file("f", "x"), dir("f")},
		{special("dev/null", tar.TypeChar), special("dev/sda", tar.TypeBlock)},
		{file("a/x", "x"), file("a/.wh.x", ""), file("a/.wh..wh..opq", ""), file(".wh.a", "")},
		{symlink("w", outside), file("w/.wh.etc", ""), file("w/.wh..wh..opq", "")},
		{dir("."), file("d", "x"), dir("d"), file("d", "y"), file(".", "")},
	}
	for _, s := range seeds {
		f.Add(encodeEntries(s))
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		dest, err := os.MkdirTemp(base, "dest")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dest)
		before := snapshot(t, base, dest)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = Extract(ctx, bytes.NewReader(decodeEntries(script)), dest, Options{
			Links: LinksInRoot, Devices: SkipDevices, Whiteouts: true, MaxBytes: 1 << 20,
		})
		if after := snapshot(t, base, dest); after != before {
			t.Fatalf("extraction changed things beside dest:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// Entry encoding: a kind byte, the name, NUL, the link target or body, NUL,
// and a byte choosing mode and owner.
var (
	kinds = []byte{tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo, tar.TypeChar, tar.TypeBlock}
	modes = []int64{0o644, 0o755, 0o4755, 0o700, 0o000, 0o777, 0o1777, 0o2755}
)

func encodeEntries(entries []ent) []byte {
	var b []byte
	for _, e := range entries {
		kind := bytes.IndexByte(kinds, e.hdr.Typeflag)
		extra := e.body
		if e.hdr.Typeflag == tar.TypeSymlink || e.hdr.Typeflag == tar.TypeLink {
			extra = e.hdr.Linkname
		}
		b = append(b, byte(kind))
		b = append(b, e.hdr.Name...)
		b = append(b, 0)
		b = append(b, extra...)
		b = append(b, 0, 1)
	}
	return b
}

// decodeEntries turns a fuzzed script into a tar stream, stopping at the
// first entry archive/tar cannot encode.
func decodeEntries(script []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for len(script) > 0 {
		kind := kinds[int(script[0])%len(kinds)]
		fields := bytes.SplitN(script[1:], []byte{0}, 3)
		if len(fields) < 3 || len(fields[2]) == 0 {
			break
		}
		name, extra, meta := string(fields[0]), fields[1], fields[2][0]
		script = fields[2][1:]
		hdr := &tar.Header{Name: name, Typeflag: kind, Mode: modes[meta&7], Uid: int(meta >> 3), Gid: int(meta >> 3),
			ModTime: testTime, Devmajor: 1, Devminor: 3}
		var body []byte
		switch kind {
		case tar.TypeReg:
			body, hdr.Size = extra, int64(len(extra))
			if meta&0x40 != 0 {
				hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.fuzz": "1", "SCHILY.xattr.trusted.fuzz": "1"}
			}
		case tar.TypeSymlink, tar.TypeLink:
			hdr.Linkname = string(extra)
		}
		if tw.WriteHeader(hdr) != nil {
			break
		}
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

// fuzzBase returns a directory on tmpfs when there is one: file creation on
// a journaled disk is several times slower, which leaves a short fuzzing run
// little time for anything but the fuzzer's own bookkeeping.
func fuzzBase(f *testing.F) string {
	base, err := os.MkdirTemp("/dev/shm", "safetar-fuzz-")
	if err != nil {
		return f.TempDir()
	}
	f.Cleanup(func() { os.RemoveAll(base) })
	return base
}
