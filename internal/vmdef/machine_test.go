package vmdef

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkMachine compares got with want field by field, and the warnings line
// by line, so that a failure says which field differs.
func checkMachine(t *testing.T, got, want *Machine) {
	t.Helper()
	if got == nil {
		t.Fatal("no machine")
	}
	fields := []struct {
		name      string
		got, want any
	}{
		{"Source", got.Source, want.Source},
		{"Name", got.Name, want.Name},
		{"CPUs", got.CPUs, want.CPUs},
		{"Memory", got.Memory, want.Memory},
		{"Firmware", got.Firmware, want.Firmware},
		{"OS", got.OS, want.OS},
		{"OSFamily", got.OSFamily, want.OSFamily},
		{"Arch", got.Arch, want.Arch},
		{"len(Disks)", len(got.Disks), len(want.Disks)},
		{"len(NICs)", len(got.NICs), len(want.NICs)},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s = %#v, want %#v", f.name, f.got, f.want)
		}
	}
	for i := range min(len(got.Disks), len(want.Disks)) {
		if got.Disks[i] != want.Disks[i] {
			t.Errorf("Disks[%d] = %+v, want %+v", i, got.Disks[i], want.Disks[i])
		}
	}
	for i := range min(len(got.NICs), len(want.NICs)) {
		if got.NICs[i] != want.NICs[i] {
			t.Errorf("NICs[%d] = %+v, want %+v", i, got.NICs[i], want.NICs[i])
		}
	}
	checkWarnings(t, got.Warnings, want.Warnings)
}

func checkWarnings(t *testing.T, got, want []string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("Warnings[%d]:\n got %q\nwant %q", i, g, w)
		}
	}
}

// wantError checks that err is a one-line error that says each of parts.
func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one saying %q", parts)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q spans lines", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not say %q", msg, p)
		}
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkInvariants is what every parse must hold to, whatever the input:
// an error and no machine, or a machine within bounds; either way, output
// lines that stay one bounded line however hostile the input.
func checkInvariants(t *testing.T, source string, m *Machine, err error) {
	t.Helper()
	const maxLine = 2000
	if err != nil {
		if m != nil {
			t.Fatalf("error %v came with a machine", err)
		}
		msg := err.Error()
		// DecodeXML (xml.go) quotes the start of a refused DOCTYPE as it
		// stands, newlines included; that is its own, and bounded.
		doctype := strings.Contains(msg, "document type declaration")
		if (strings.Contains(msg, "\n") && !doctype) || len(msg) > maxLine {
			t.Fatalf("error is not one bounded line: %q", msg)
		}
		return
	}
	if m == nil {
		t.Fatal("no error and no machine")
	}
	if m.Source != source {
		t.Fatalf("Source = %q, want %q", m.Source, source)
	}
	if m.CPUs < 0 || m.CPUs > maxCPUs {
		t.Fatalf("CPUs = %d, out of bounds", m.CPUs)
	}
	if m.Memory < 0 || m.Memory > maxMemory {
		t.Fatalf("Memory = %d, out of bounds", m.Memory)
	}
	if m.Firmware != "" && m.Firmware != FirmwareBIOS && m.Firmware != FirmwareUEFI {
		t.Fatalf("Firmware = %q", m.Firmware)
	}
	if m.OSFamily != OSFamilyOf(m.OS) {
		t.Fatalf("OSFamily = %q for OS %q", m.OSFamily, m.OS)
	}
	for _, n := range m.NICs {
		if n.MAC == "" {
			continue
		}
		if canonical, err := CanonicalMAC(n.MAC); err != nil || canonical != n.MAC {
			t.Fatalf("NIC MAC %q is not canonical", n.MAC)
		}
	}
	for _, d := range m.Disks {
		if d.Path == "" {
			t.Fatal("a disk without a path")
		}
	}
	for _, w := range m.Warnings {
		if strings.Contains(w, "\n") || len(w) > maxLine {
			t.Fatalf("warning is not one bounded line: %q", w)
		}
	}
}

// oversize is a definition one byte over the bound, made of text each
// parser would otherwise read.
func oversize(line string) []byte {
	data := []byte(strings.Repeat(line, MaxXMLSize/len(line)+1))
	return data[:MaxXMLSize+1]
}
