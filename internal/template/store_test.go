package template

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestKeysAreNeverPaths(t *testing.T) {
	for key, want := range map[string]bool{
		"busybox": true, "busybox.vm.arm64": true, "debian-bookworm.vm.amd64": true,
		"..": false, "a/b": false, "busybox.vm.aarch64": false, "busybox.vm.": false, ".": false, "": false,
	} {
		if got := validKey(key); got != want {
			t.Errorf("validKey(%q) = %v, want %v", key, got, want)
		}
	}
	if Key("busybox", TypeVM, "arm64") != "busybox.vm.arm64" || Key("busybox", TypeContainer, "amd64") != "busybox" {
		t.Error("Key does not name directories as documented")
	}
}

func TestResolveTypesAndArches(t *testing.T) {
	r, err := Request{Source: "busybox", Type: TypeVM, Arch: "aarch64"}.Resolve()
	if err != nil || r.Key != "busybox.vm.arm64" || r.Arch.QEMU != "aarch64" {
		t.Errorf("busybox vm aarch64: %+v, %v", r, err)
	}
	if _, err := (Request{Source: "busybox", Arch: "arm64"}).Resolve(); err == nil {
		t.Error("a foreign-arch container template was accepted")
	}
	if _, err := (Request{Source: "busybox", Type: "zone"}).Resolve(); err == nil {
		t.Error("type zone accepted")
	}
	if r, err := (Request{Source: "debian"}).Resolve(); err != nil || r.Key != "debian" || r.Suite != DefaultSuite {
		t.Errorf("debian: %+v, %v", r, err)
	}
}

// A container template's root tree is shown to API clients (benchmarks
// read it), derived at load and never written to template.yaml; a VM
// template has none.
func TestLoadGivesContainerRootfs(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	for name, typ := range map[string]string{"box": TypeContainer, "box.vm.amd64": TypeVM} {
		if err := os.MkdirAll(filepath.Join(s.Dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		meta := fmt.Sprintf("id: %s\nname: box\ntype: %s\n", name, typ)
		if err := os.WriteFile(filepath.Join(s.Dir, name, metaFile), []byte(meta), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Load("box")
	if err != nil || c.Rootfs != s.Rootfs("box") {
		t.Errorf("container template: %+v, %v; want rootfs %s", c, err, s.Rootfs("box"))
	}
	if out, err := yaml.Marshal(c); err != nil || strings.Contains(string(out), s.Rootfs("box")) {
		t.Errorf("template.yaml would store the derived rootfs: %s (%v)", out, err)
	}
	if vm, err := s.Load("box.vm.amd64"); err != nil || vm.Rootfs != "" {
		t.Errorf("VM template: %+v, %v; want no rootfs", vm, err)
	}
}
