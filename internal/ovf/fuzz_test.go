package ovf

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.ovf")
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	written, err := Write(exportSpec())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(written)
	f.Add([]byte(envelope(oneFile, oneDisk, "", basicItems())))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		m := d.Machine
		if m.Source != "ovf" {
			t.Errorf("source %q", m.Source)
		}
		if m.CPUs < 0 || m.CPUs > MaxCPUs || m.Memory < 0 || m.Memory > MaxMemory {
			t.Errorf("cpus %d memory %d out of bounds", m.CPUs, m.Memory)
		}
		hrefs := map[string]bool{}
		for _, file := range d.Files {
			if err := checkPlainName(file.Href); err != nil {
				t.Errorf("href accepted: %v", err)
			}
			if file.Size < -1 {
				t.Errorf("file %q size %d", file.Href, file.Size)
			}
			hrefs[file.Href] = true
		}
		for _, disk := range m.Disks {
			if disk.Path != "" && !hrefs[disk.Path] {
				t.Errorf("disk path %q is no href of References", disk.Path)
			}
			if disk.Capacity < 0 || disk.Capacity > MaxCapacity {
				t.Errorf("disk %q capacity %d out of bounds", disk.Path, disk.Capacity)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("SHA256(vm.ovf)= 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("SHA1 (vm-disk001.vmdk) = 0123456789abcdef0123456789abcdef01234567\r\nSHA1 (vm.ovf) = 89abcdef0123456789abcdef0123456789abcdef\r\n"))
	f.Add([]byte("SHA512(a(b).vmdk)=00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\n"))
	f.Add([]byte("MD5(x)= 00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if len(m) == 0 {
			t.Error("an empty manifest was accepted")
		}
		for name, d := range m {
			if err := checkPlainName(name); err != nil {
				t.Errorf("name accepted: %v", err)
			}
			if len(d.Sum) != d.Algorithm.size() {
				t.Errorf("%q: %s digest of %d bytes", name, d.Algorithm, len(d.Sum))
			}
		}
	})
}

func FuzzExtractOVA(f *testing.F) {
	a := newAppliance(f)
	ovf, disk := file("vm.ovf", a.ovf), file("disk.vmdk", a.disk)
	add := func(members ...member) { f.Add(archive(f, members...).Bytes()) }
	add(ovf, manifestOf("SHA256", ovf, disk), disk)
	add(ovf, disk, manifestOf("SHA1", ovf, disk), file("vm.cert", []byte("x")))
	add(ovf, file("../disk.vmdk", a.disk))
	add(ovf, member{tar.Header{Typeflag: tar.TypeSymlink, Name: "disk.vmdk", Linkname: "/etc/passwd"}, nil})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		d, err := ExtractOVA(context.Background(), bytes.NewReader(data), dest, nil)
		if got := entries(t, parent); !slices.Equal(got, []string{"dest"}) {
			t.Fatalf("written outside the destination: %v", got)
		}
		for _, name := range entries(t, dest) {
			if info, err := os.Lstat(filepath.Join(dest, name)); err != nil || !info.Mode().IsRegular() {
				t.Errorf("dest holds %s, not a regular file", name)
			}
		}
		if err != nil {
			return
		}
		for _, disk := range d.Machine.Disks {
			if _, err := os.Lstat(filepath.Join(dest, disk.Path)); disk.Path != "" && err != nil {
				t.Errorf("disk %q was not extracted: %v", disk.Path, err)
			}
		}
	})
}
