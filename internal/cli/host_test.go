package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// hostWithout returns a host check in which the requirements named are
// missing and every other one is present.
func hostWithout(names ...string) api.HostCheck {
	var check api.HostCheck
	for _, r := range hostreq.All() {
		present := true
		for _, n := range names {
			present = present && r.Name != n
		}
		check.Requirements = append(check.Requirements, hostreq.Status{Requirement: r, Present: present})
	}
	check.InstallLine = hostreq.InstallLine(hostreq.Missing(check.Requirements))
	return check
}

func TestHostCheckNamesAMissingRequirementsFeatureAndPackage(t *testing.T) {
	var out bytes.Buffer
	printMissing(&out, hostWithout(hostreq.OVMFDescriptor, "mcopy", "podman"))
	text := out.String()
	for _, want := range []string{
		"MISSING", hostreq.OVMFDescriptor, "ovmf", "UEFI guests",
		"mcopy", "mtools", "EFI system partition",
		"podman", "bench's podman peer",
		"Fix: apt-get install ovmf mtools podman (or make deps)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("host check output lacks %q:\n%s", want, text)
		}
	}
	out.Reset()
	printMissing(&out, hostWithout())
	if text := out.String(); !strings.HasPrefix(text, "Host requirements: all that make deps installs are present") || strings.Contains(text, "Fix:") {
		t.Errorf("a complete host: %q", text)
	}
}

// TestHostCheckShowsEachClassCapabilities: a row per class with its
// arches, its export formats and what it can do, in words.
func TestHostCheckShowsEachClassCapabilities(t *testing.T) {
	var out bytes.Buffer
	err := printCapabilities(&out, []api.ClassVerdict{
		{Class: "container", Capabilities: &api.Capabilities{Exec: true, CopyRunning: true, Copy: true, Arches: []string{"amd64"}, ExportFormats: []string{"tar"}}},
		{Class: "bare"}, // an older daemon's verdict: no capabilities
		{Class: "qemu", Capabilities: &api.Capabilities{Snapshots: true, Arches: []string{"amd64", "riscv64"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CLASS") {
		t.Fatalf("capabilities table:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"container", "amd64", "tar", "exec, copy, copy running"},
		{"qemu", "amd64,riscv64", "-", "snapshots"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}
}
