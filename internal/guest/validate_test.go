package guest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// wantInvalid fails unless err is one ErrInvalid line containing every
// part of want.
func wantInvalid(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil || !errors.Is(err, api.ErrInvalid) || strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: err = %v, want one ErrInvalid line", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: err = %q, want it to say %q", what, err, w)
		}
	}
}

// TestSetRefusesBadCounts: Set refuses what no guest can have; memory
// beyond the host's is refused by CheckHostMemory, which the daemon skips
// when the administrator forces an overcommit.
func TestSetRefusesBadCounts(t *testing.T) {
	wantInvalid(t, "host memory", CheckHostMemory("memory", 99999<<40), "memory 99999TiB", "the host has", "--force")
	d := sample()
	wantInvalid(t, "memory=lots", d.Set("memory", "lots"), "memory")
	if d.Memory != sample().Memory {
		t.Errorf("a refused memory changed the definition to %s", d.Memory)
	}
	wantInvalid(t, "memory=0", sample().Set("memory", "0"), "memory 0", "at least")
	wantInvalid(t, "cpus=0", sample().Set("cpus", "0"), "cpus 0", "give at least 1 CPU")
	wantInvalid(t, "processes=0", sample().Set("processes", "0"), "processes 0", "at least 1")
}

func TestParseRefusesHandEdits(t *testing.T) {
	good, _ := sample().Marshal()
	vm := sampleVM()
	vmText, _ := vm.Marshal()
	for _, c := range []struct {
		what, text string
		want       []string
	}{
		{"template as a path", strings.Replace(string(good), "template: busybox", "template: ../../etc", 1), []string{`template "../../etc"`, "template list"}},
		{"template with a slash", strings.Replace(string(good), "template: busybox", "template: a/b", 1), []string{`template "a/b"`}},
		{"privileged overlay", strings.Replace(string(good), "rootfs: overlay", "rootfs: overlay\nprivileged: true", 1), []string{"privileged", "remove privileged: true"}},
		{"privileged vm", strings.Replace(string(vmText), "rootfs: qcow2", "rootfs: qcow2\nprivileged: true", 1), []string{"privileged", "only containers"}},
		{"huge disk", strings.Replace(string(vmText), "size: 1GiB", "size: 99999TiB", 1), []string{"disk.root.size 99999TiB", "64TiB"}},
		{"zero cpus", strings.Replace(string(good), "cpus: 2", "cpus: 0", 1), []string{"cpus 0", "give at least 1 CPU"}},
		{"zero processes", strings.Replace(string(good), "processes: 100", "processes: 0", 1), []string{"processes 0"}},
	} {
		_, err := Parse([]byte(c.text))
		wantInvalid(t, c.what, err, c.want...)
	}
	// A privileged copy is what create --privileged makes.
	priv := sample()
	priv.Privileged, priv.Rootfs = true, RootfsCopy
	data, _ := priv.Marshal()
	if _, err := Parse(data); err != nil {
		t.Errorf("a privileged copy: %v", err)
	}
}

func TestLoadRefusesANameOtherThanItsDirectory(t *testing.T) {
	s := FileStore{Dir: t.TempDir()}
	dir := s.Path("web-2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(dir, sample()); err != nil { // says name: web-1
		t.Fatal(err)
	}
	_, err := s.Load("web-2")
	wantInvalid(t, "load", err, "guest web-2", `name "web-1" differs from its directory "web-2"`, "set name: web-2")
	if _, statErr := os.Stat(filepath.Join(dir, FileName)); statErr != nil {
		t.Errorf("loading removed the definition: %v", statErr)
	}
	d := sample()
	d.Name = "web-2"
	if err := s.Save(dir, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("web-2"); err != nil {
		t.Errorf("a matching name: %v", err)
	}
}

func TestSecurityIDMapRoundTripsAndHandEditsAreRefused(t *testing.T) {
	iso := sample()
	iso.Security = Security{IDMap: "isolated", IDMapBase: 1065536 + 3*65536}
	data, _ := iso.Marshal()
	if !strings.Contains(string(data), "security:\n  idmap: isolated\n  idmapBase: 1262144\n") {
		t.Errorf("guest.yaml of an isolated guest:\n%s", data)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := back.IDMap(); !ok || m.HostBase != 1262144 || m.Size != 65536 || !back.Isolated() {
		t.Errorf("read back: %+v %v isolated %v", m, ok, back.Isolated())
	}
	// An older definition, without the section, is a shared guest.
	old, _ := sample().Marshal()
	if strings.Contains(string(old), "security") {
		t.Errorf("a definition without a security section wrote one:\n%s", old)
	}
	if d, err := Parse(old); err != nil || d.Isolated() {
		t.Errorf("an older definition: %v, isolated %v; want shared", err, d != nil && d.Isolated())
	} else if m, _ := d.IDMap(); m.HostBase != 1000000 {
		t.Errorf("an older definition maps to %d, want the shared 1000000", m.HostBase)
	}
	text := string(data)
	for _, c := range []struct {
		what, text string
		want       []string
	}{
		{"base off the grid", strings.Replace(text, "idmapBase: 1262144", "idmapBase: 1262145", 1), []string{"security.idmapBase 1262145", "restore the value"}},
		{"the shared range as a base", strings.Replace(text, "idmapBase: 1262144", "idmapBase: 1000000", 1), []string{"security.idmapBase 1000000"}},
		{"no base", strings.Replace(text, "  idmapBase: 1262144\n", "", 1), []string{"security.idmapBase 0"}},
		{"unknown kind", strings.Replace(text, "idmap: isolated", "idmap: private", 1), []string{`security.idmap "private"`, "isolated or shared"}},
		{"shared with a base", strings.Replace(text, "idmap: isolated", "idmap: shared", 1), []string{"security.idmapBase", "remove idmapBase"}},
	} {
		_, err := Parse([]byte(c.text))
		wantInvalid(t, c.what, err, c.want...)
	}
	vm := sampleVM()
	vm.Security = Security{IDMap: "shared"}
	vmText, _ := vm.Marshal()
	_, err = Parse(vmText)
	wantInvalid(t, "a vm with an id map", err, "security", "only unprivileged containers")
	// The id map is fixed at creation: config edit refuses to change it.
	edited := back.Clone()
	edited.Security.IDMapBase += 65536
	if _, err := Changes(back, edited); err == nil {
		t.Error("Changes accepted a new id map base")
	}
}

// TestSecurityKeys: nesting and capabilities are set, validated, compared
// by config edit and refused where they mean nothing.
func TestSecurityKeys(t *testing.T) {
	d := sample()
	if err := d.Set(KeyNesting, "true"); err != nil || !d.Security.Nesting {
		t.Fatalf("set nesting: %v, %+v", err, d.Security)
	}
	if err := d.Set(KeyCapabilities, "default,sys_ptrace,-CAP_NET_RAW"); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Security.Capabilities, "CAP_SYS_PTRACE") || slices.Contains(d.Security.Capabilities, "CAP_NET_RAW") {
		t.Errorf("capabilities %v", d.Security.Capabilities)
	}
	data, _ := d.Marshal()
	back, err := Parse(data)
	if err != nil || !slices.Equal(back.Security.Capabilities, d.Security.Capabilities) || !back.Security.Nesting {
		t.Errorf("round trip: %v, %+v", err, back.Security)
	}
	set, err := Changes(sample(), d)
	if err != nil || set[KeyNesting] != "true" || !strings.Contains(set[KeyCapabilities], "CAP_SYS_PTRACE") {
		t.Errorf("Changes = %v, %v", set, err)
	}
	if err := d.Set(KeyCapabilities, "default"); err != nil || d.Security.Capabilities != nil {
		t.Errorf("back to the default: %v, %v", err, d.Security.Capabilities)
	}
	wantInvalid(t, "bogus capability", sample().Set(KeyCapabilities, "CAP_FLY"), "security.capabilities", "CAP_FLY")
	wantInvalid(t, "no capability", sample().Set(KeyCapabilities, "-CAP_KILL"), "no capability at all")
	wantInvalid(t, "nesting=maybe", sample().Set(KeyNesting, "maybe"), "security.nesting", "true or false")
	vm := sampleVM()
	wantInvalid(t, "nesting on a VM", vm.Set(KeyNesting, "true"), "only unprivileged containers")
	hand := sample()
	hand.Security.Capabilities = []string{"cap_kill"}
	wantInvalid(t, "hand-written lower case", hand.Validate(), "security.capabilities", "cap_kill")
}
