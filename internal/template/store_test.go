package template

import "testing"

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
