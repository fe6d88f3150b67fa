package ovf

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// streamVMDK returns a small file that reads as a stream-optimized VMDK:
// the sparse header, its compressed-grains flag, and an embedded text
// descriptor (extra adds lines to it).
func streamVMDK(extra string) []byte {
	b := make([]byte, 2048)
	copy(b, "KDMV")
	le := binary.LittleEndian
	le.PutUint32(b[4:], 3)
	le.PutUint32(b[8:], 1|1<<16|1<<17)
	le.PutUint64(b[28:], 1) // descriptor at sector 1
	le.PutUint64(b[36:], 1) // one sector long
	copy(b[512:], "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n"+extra)
	return b
}

// testAppliance is an exported machine: its descriptor and its disk.
type testAppliance struct {
	ovf, disk []byte
}

func newAppliance(t testing.TB) testAppliance {
	t.Helper()
	disk := streamVMDK("")
	spec := exportSpec()
	spec.Disk = ExportDisk{Href: "disk.vmdk", FileSize: int64(len(disk)), Capacity: gib}
	ovf, err := Write(spec)
	if err != nil {
		t.Fatal(err)
	}
	return testAppliance{ovf: ovf, disk: disk}
}

// member is one tar entry of a hand-built archive.
type member struct {
	hdr  tar.Header
	data []byte
}

func file(name string, data []byte) member {
	return member{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: time.Unix(1700000000, 0)}, data}
}

func manifestOf(alg string, files ...member) member {
	var b strings.Builder
	for _, f := range files {
		switch alg {
		case "SHA1":
			fmt.Fprintf(&b, "SHA1 (%s) = %x\n", f.hdr.Name, sha1.Sum(f.data)) // VirtualBox's spacing
		default:
			fmt.Fprintf(&b, "SHA256(%s)= %x\n", f.hdr.Name, sha256.Sum256(f.data))
		}
	}
	return file("vm.mf", []byte(b.String()))
}

func archive(t testing.TB, members ...member) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&m.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// sandbox returns an empty destination directory inside a parent that
// holds nothing else, so a test can see anything written beside it.
func sandbox(t *testing.T) (parent, dest string) {
	parent = t.TempDir()
	dest = filepath.Join(parent, "dest")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	return parent, dest
}

func entries(t testing.TB, dir string) []string {
	t.Helper()
	list, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteOVAThenExtract(t *testing.T) {
	a := newAppliance(t)
	src := t.TempDir()
	diskPath := filepath.Join(src, "disk.vmdk")
	if err := os.WriteFile(diskPath, a.disk, 0o644); err != nil {
		t.Fatal(err)
	}
	var ova bytes.Buffer
	var written []int64
	err := WriteOVA(context.Background(), &ova, "web.ovf", a.ovf, []Member{{Name: "disk.vmdk", Path: diskPath}},
		func(done int64) { written = append(written, done) })
	if err != nil {
		t.Fatal(err)
	}
	if len(written) == 0 || written[len(written)-1] != int64(len(a.disk)) || !slices.IsSorted(written) {
		t.Errorf("progress %v; want it to grow to the disk's size over both passes", written)
	}

	// The layout: .ovf, .mf, then the disk, ustar, mode 0644.
	tr := tar.NewReader(bytes.NewReader(ova.Bytes()))
	var names []string
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, hdr.Name)
		if hdr.Format != tar.FormatUSTAR || hdr.Mode != 0o644 || hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: format %v mode %o type %c; want ustar 0644 regular", hdr.Name, hdr.Format, hdr.Mode, hdr.Typeflag)
		}
		if hdr.Name == "web.mf" {
			var mf bytes.Buffer
			mf.ReadFrom(tr)
			if !strings.HasPrefix(mf.String(), fmt.Sprintf("SHA256(web.ovf)= %x\nSHA256(disk.vmdk)= %x\n", sha256.Sum256(a.ovf), sha256.Sum256(a.disk))) {
				t.Errorf("manifest %q", mf.String())
			}
		}
	}
	if want := []string{"web.ovf", "web.mf", "disk.vmdk"}; !slices.Equal(names, want) {
		t.Errorf("members %v; want %v", names, want)
	}

	parent, dest := sandbox(t)
	var read []int64
	d, err := ExtractOVA(context.Background(), bytes.NewReader(ova.Bytes()), dest, func(done int64) { read = append(read, done) })
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "disk.vmdk")); !bytes.Equal(got, a.disk) {
		t.Error("the extracted disk differs from the exported one")
	}
	if len(d.Machine.Disks) != 1 || d.Machine.Disks[0].Format != "vmdk" || d.Machine.Disks[0].Path != "disk.vmdk" {
		t.Errorf("disks %+v; want disk.vmdk, vmdk", d.Machine.Disks)
	}
	wantWarnings(t, d.Machine.Warnings)
	if !slices.Equal(entries(t, dest), []string{"disk.vmdk"}) || !slices.Equal(entries(t, parent), []string{"dest"}) {
		t.Errorf("dest holds %v, its parent %v; want only the disk", entries(t, dest), entries(t, parent))
	}
	if len(read) == 0 || !slices.IsSorted(read) {
		t.Errorf("progress %v; want growing byte counts", read)
	}
}

func TestExtractOVAManifestAtTheEndSHA1AndExtras(t *testing.T) {
	a := newAppliance(t)
	ovf, disk := file("vm.ovf", a.ovf), file("disk.vmdk", a.disk)
	ova := archive(t, ovf, disk, file("README.txt", []byte("hello")), manifestOf("SHA1", ovf, disk), file("vm.cert", []byte("cert")))
	_, dest := sandbox(t)
	d, err := ExtractOVA(context.Background(), ova, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings(t, d.Machine.Warnings, `OVA member "README.txt" is not referenced by the descriptor: skipped`, `certificate "vm.cert" not checked`)
	if !slices.Equal(entries(t, dest), []string{"disk.vmdk"}) {
		t.Errorf("dest holds %v; want only the disk", entries(t, dest))
	}
}

func TestExtractOVAWithoutManifestWarns(t *testing.T) {
	a := newAppliance(t)
	_, dest := sandbox(t)
	d, err := ExtractOVA(context.Background(), archive(t, file("vm.ovf", a.ovf), file("disk.vmdk", a.disk)), dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings(t, d.Machine.Warnings, "no manifest: contents not verified")
}

func TestExtractOVARefuses(t *testing.T) {
	a := newAppliance(t)
	ovf, disk := file("vm.ovf", a.ovf), file("disk.vmdk", a.disk)
	special := func(name string, flag byte, link string) member {
		return member{tar.Header{Typeflag: flag, Name: name, Linkname: link, Mode: 0o644}, nil}
	}
	bad := file("disk.vmdk", a.disk)
	bad.data = bytes.Clone(a.disk)
	bad.data[len(bad.data)-1] ^= 1
	wrongManifest := manifestOf("SHA256", ovf, bad)
	parent := t.TempDir()
	abs := filepath.Join(parent, "abs")
	larger := file("disk.vmdk", append(bytes.Clone(a.disk), 0))
	qcow := file("disk.vmdk", append([]byte("QFI\xfb\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x01\x00"), make([]byte, 1024-16)...))
	parentVMDK := file("disk.vmdk", streamVMDK(`parentFileNameHint="/etc/shadow"`+"\n"))

	for _, tc := range []struct {
		name    string
		members []member
		want    []string // fragments of the error
	}{
		{"member with ..", []member{ovf, file("../x", []byte("x")), disk}, []string{`"../x" is not a plain file name`}},
		{"absolute member", []member{ovf, file(abs, []byte("x")), disk}, []string{abs, "not a plain file name"}},
		{"symlink", []member{ovf, special("disk.vmdk", tar.TypeSymlink, "/etc/passwd")}, []string{`"disk.vmdk" is a symbolic link`}},
		{"hardlink", []member{ovf, special("disk.vmdk", tar.TypeLink, "vm.ovf")}, []string{`"disk.vmdk" is a hard link`}},
		{"char device", []member{ovf, special("disk.vmdk", tar.TypeChar, "")}, []string{`"disk.vmdk" is a character device`}},
		{"fifo", []member{ovf, special("disk.vmdk", tar.TypeFifo, "")}, []string{`"disk.vmdk" is a FIFO`}},
		{"directory", []member{ovf, special("disks", tar.TypeDir, "")}, []string{`"disks" is a directory`}},
		{"larger than declared", []member{ovf, larger}, []string{`"disk.vmdk" is 2049 bytes; the descriptor declares 2048 (ovf:size)`}},
		{"manifest mismatch", []member{ovf, wrongManifest, disk}, []string{`"disk.vmdk": SHA256 digest`, "does not match the manifest"}},
		{"manifest mismatch at the end", []member{ovf, disk, wrongManifest}, []string{`"disk.vmdk": SHA256 digest`, "does not match the manifest"}},
		{"descriptor altered", []member{file("vm.ovf", append(bytes.Clone(a.ovf), ' ')), manifestOf("SHA256", ovf, disk), disk}, []string{`"vm.ovf": SHA256 digest`}},
		{"file not in the manifest", []member{ovf, manifestOf("SHA256", ovf), disk}, []string{`"disk.vmdk" is not listed in the manifest`}},
		{"manifest lists a missing file", []member{ovf, manifestOf("SHA256", ovf, disk, file("extra.iso", nil)), disk}, []string{`lists "extra.iso", which the appliance does not contain`}},
		{"ovf not first", []member{disk, ovf}, []string{`the first member is "disk.vmdk"`, "starts with its .ovf descriptor"}},
		{"missing referenced file", []member{ovf}, []string{`references "disk.vmdk", which the archive does not contain`}},
		{"member twice", []member{ovf, disk, disk}, []string{`"disk.vmdk" appears twice`}},
		{"empty archive", nil, []string{"the archive is empty"}},
		{"qcow2 with a backing file", []member{ovf, qcow}, []string{`disk "disk.vmdk": it is a qcow2 image with a backing file`}},
		{"VMDK with a parent", []member{ovf, parentVMDK}, []string{`disk "disk.vmdk": it is a VMDK delta disk naming a parent`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, dest := sandbox(t)
			_, err := ExtractOVA(context.Background(), archive(t, tc.members...), dest, nil)
			if err == nil || !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("error %v; want an invalid error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := entries(t, parent); !slices.Equal(got, []string{"dest"}) {
				t.Errorf("the destination's parent holds %v: something was written outside it", got)
			}
			if _, err := os.Lstat(abs); err == nil {
				t.Errorf("%s was written", abs)
			}
			for _, name := range entries(t, dest) {
				if info, err := os.Lstat(filepath.Join(dest, name)); err != nil || !info.Mode().IsRegular() {
					t.Errorf("dest holds %s, not a regular file", name)
				}
			}
		})
	}
}

func TestExtractOVAStopsWhenCancelled(t *testing.T) {
	a := newAppliance(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, dest := sandbox(t)
	_, err := ExtractOVA(ctx, archive(t, file("vm.ovf", a.ovf), file("disk.vmdk", a.disk)), dest, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v; want context.Canceled", err)
	}
}

func TestOpenDir(t *testing.T) {
	a := newAppliance(t)
	setup := func(t *testing.T, manifest bool) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "vm.ovf"), a.ovf, 0o644)
		os.WriteFile(filepath.Join(dir, "disk.vmdk"), a.disk, 0o644)
		if manifest {
			mf := manifestOf("SHA256", file("vm.ovf", a.ovf), file("disk.vmdk", a.disk))
			os.WriteFile(filepath.Join(dir, "vm.mf"), mf.data, 0o644)
		}
		return filepath.Join(dir, "vm.ovf")
	}

	t.Run("verified", func(t *testing.T) {
		var hashed int64
		d, err := OpenDir(context.Background(), setup(t, true), func(done int64) { hashed = done })
		if err != nil {
			t.Fatal(err)
		}
		wantWarnings(t, d.Machine.Warnings)
		if d.Machine.Disks[0].Path != "disk.vmdk" || d.Machine.Disks[0].Format != "vmdk" || hashed != int64(len(a.disk)) {
			t.Errorf("disks %+v, %d bytes hashed; want disk.vmdk, vmdk, %d", d.Machine.Disks, hashed, len(a.disk))
		}
	})
	t.Run("VerifyDir", func(t *testing.T) {
		path := setup(t, true)
		if _, err := VerifyDir(context.Background(), path, a.ovf); err != nil {
			t.Errorf("VerifyDir with the descriptor read: %v", err)
		}
		_, err := VerifyDir(context.Background(), path, append(bytes.Clone(a.ovf), '\n'))
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), `"vm.ovf": SHA256 digest`) {
			t.Errorf("error %v; want the descriptor's digest mismatch", err)
		}
	})
	t.Run("no manifest", func(t *testing.T) {
		d, err := OpenDir(context.Background(), setup(t, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		wantWarnings(t, d.Machine.Warnings, "no manifest: contents not verified")
	})
	t.Run("altered disk", func(t *testing.T) {
		path := setup(t, true)
		os.WriteFile(filepath.Join(filepath.Dir(path), "disk.vmdk"), streamVMDK("#"), 0o644)
		_, err := OpenDir(context.Background(), path, nil)
		if err == nil || !strings.Contains(err.Error(), `"disk.vmdk": SHA256 digest`) {
			t.Errorf("error %v; want a digest mismatch naming disk.vmdk", err)
		}
	})
	t.Run("symlink out of the directory", func(t *testing.T) {
		path := setup(t, false)
		outside := filepath.Join(t.TempDir(), "secret.vmdk")
		os.WriteFile(outside, a.disk, 0o644)
		link := filepath.Join(filepath.Dir(path), "disk.vmdk")
		os.Remove(link)
		if err := os.Symlink(outside, link); err != nil {
			t.Fatal(err)
		}
		_, err := OpenDir(context.Background(), path, nil)
		if err == nil || !strings.Contains(err.Error(), `"disk.vmdk"`) {
			t.Errorf("error %v; want a refusal naming disk.vmdk", err)
		}
	})
	t.Run("FIFO", func(t *testing.T) {
		path := setup(t, false)
		fifo := filepath.Join(filepath.Dir(path), "disk.vmdk")
		os.Remove(fifo)
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenDir(context.Background(), path, nil)
		if err == nil || !strings.Contains(err.Error(), `"disk.vmdk" is not a regular file`) {
			t.Errorf("error %v; want the FIFO refused, without blocking", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		path := setup(t, false)
		os.Remove(filepath.Join(filepath.Dir(path), "disk.vmdk"))
		_, err := OpenDir(context.Background(), path, nil)
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), `references "disk.vmdk", which is not beside it`) {
			t.Errorf("error %v; want the missing file named", err)
		}
	})
}

func TestWriteOVARefuses(t *testing.T) {
	a := newAppliance(t)
	for _, tc := range []struct {
		name    string
		ovfName string
		members []Member
		want    string
	}{
		{"descriptor name", "vm.xml", nil, `descriptor name "vm.xml"`},
		{"member path", "vm.ovf", []Member{{Name: "a/b.vmdk", Path: "/dev/null"}}, `"a/b.vmdk" is not a plain file name`},
		{"member named as the manifest", "vm.ovf", []Member{{Name: "vm.mf", Path: "/dev/null"}}, `member "vm.mf"`},
		{"not a regular file", "vm.ovf", []Member{{Name: "disk.vmdk", Path: "/dev/null"}}, "/dev/null is not a regular file"},
	} {
		err := WriteOVA(context.Background(), &bytes.Buffer{}, tc.ovfName, a.ovf, tc.members, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want one containing %q", tc.name, err, tc.want)
		}
	}
}
