package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindUEFIReadsQEMUsDescriptors(t *testing.T) {
	// The host's own descriptors, as make deps installs them (ovmf).
	fw, err := findUEFI(firmwareDirs, "x86_64", "q35")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fw.Code, fw.VarsTemplate} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("descriptor names a missing file: %v", err)
		}
	}
	if strings.Contains(fw.Code, "secboot") || strings.Contains(fw.Code, ".ms.") {
		t.Errorf("picked a Secure Boot build: %+v", fw)
	}
}

func TestFindUEFIChoosesAndRefuses(t *testing.T) {
	dir, override := t.TempDir(), t.TempDir()
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	for _, f := range []string{code, vars} {
		os.WriteFile(f, []byte("x"), 0o644)
	}
	descriptor := func(features, arch, machine, codeFile string) string {
		return `{"interface-types": ["uefi"], "mapping": {"device": "flash",
			"executable": {"filename": "` + codeFile + `", "format": "raw"},
			"nvram-template": {"filename": "` + vars + `", "format": "raw"}},
			"targets": [{"architecture": "` + arch + `", "machines": ["` + machine + `"]}],
			"features": [` + features + `]}`
	}
	write := func(dir, name, text string) { os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644) }
	write(dir, "10-secure.json", descriptor(`"secure-boot", "requires-smm"`, "x86_64", "pc-q35-*", code))
	write(dir, "20-arm.json", descriptor("", "aarch64", "virt-*", code))
	write(dir, "30-i440fx.json", descriptor("", "x86_64", "pc-i440fx-*", code))
	write(dir, "40-missing.json", descriptor("", "x86_64", "pc-q35-*", filepath.Join(dir, "GONE.fd")))
	write(dir, "50-broken.json", "{")
	if _, err := findUEFI([]string{dir}, "x86_64", "q35"); err == nil || !strings.Contains(err.Error(), "no UEFI firmware for x86_64 q35") {
		t.Fatalf("no usable descriptor: err = %v", err)
	}
	write(dir, "60-plain.json", descriptor(`"acpi-s3"`, "x86_64", "pc-q35-*", code))
	if fw, err := findUEFI([]string{dir}, "x86_64", "q35"); err != nil || fw.Code != code || fw.VarsTemplate != vars {
		t.Fatalf("plain descriptor: %+v, %v", fw, err)
	}
	// A later directory replaces a descriptor of the same name.
	write(override, "60-plain.json", descriptor("", "x86_64", "pc-i440fx-*", code))
	if _, err := findUEFI([]string{dir, override}, "x86_64", "q35"); err == nil {
		t.Error("the overriding descriptor was ignored")
	}
}
