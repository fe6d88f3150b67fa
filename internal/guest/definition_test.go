package guest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func sample() *Definition {
	return &Definition{
		SchemaVersion: SchemaVersion, Name: "web-1", Type: TypeContainer, Class: "container",
		Template: "busybox", Arch: "amd64", CPUs: 2, Memory: 64 << 20, Processes: 100,
		Rootfs: RootfsOverlay, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Status: Status{State: api.StateStopped},
	}
}

func TestDefinitionRoundTrip(t *testing.T) {
	d := sample()
	data, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "memory: 64MiB") {
		t.Errorf("memory not human-readable:\n%s", data)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != d.Name || back.Memory != d.Memory || back.CPUs != d.CPUs || !back.CreatedAt.Equal(d.CreatedAt) {
		t.Errorf("round trip changed the definition: %+v", back)
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := sample().Marshal()
	cases := map[string]struct{ edit, wantField string }{
		"unknown key": {"colour: blue\n", `unknown key "colour"`},
		"bad memory":  {"", "memory"},
		"bad name":    {"", "name"},
	}
	for name, c := range cases {
		text := string(good) + c.edit
		switch name {
		case "bad memory":
			text = strings.Replace(string(good), "memory: 64MiB", "memory: lots", 1)
		case "bad name":
			text = strings.Replace(string(good), "name: web-1", "name: Web_1", 1)
		}
		_, err := Parse([]byte(text))
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.wantField) {
			t.Errorf("%s: err = %v, want ErrInvalid naming %q", name, err, c.wantField)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", name, err)
		}
	}
}

func TestValidateNames(t *testing.T) {
	for _, ok := range []string{"a", "web-1", "x" + strings.Repeat("y", 62)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1abc", "Web", "a_b", "a-", "x" + strings.Repeat("y", 63), "a.b"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSet(t *testing.T) {
	d := sample()
	if err := d.Set("memory", "128MiB"); err != nil || d.Memory != 128<<20 {
		t.Fatalf("set memory: %v, %d", err, d.Memory)
	}
	for _, c := range [][2]string{{"cpus", "0"}, {"cpus", "x"}, {"memory", "1KiB"}, {"colour", "red"}, {"processes", "-3"}} {
		if err := sample().Set(c[0], c[1]); err == nil || !strings.Contains(err.Error(), c[0]) {
			t.Errorf("set %s=%s: err = %v, want one naming %s", c[0], c[1], err, c[0])
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := sample().Marshal()
	f.Add(good)
	f.Add([]byte("name: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err == nil {
			if verr := d.Validate(); verr != nil {
				t.Fatalf("parsed an invalid definition: %v", verr)
			}
		}
	})
}

func TestChanges(t *testing.T) {
	current := sample()
	edited := current.Clone()
	edited.Memory, edited.CPUs = 128<<20, 3
	edited.Status.State = "running" // the daemon's, ignored
	set, err := Changes(current, edited)
	if err != nil || len(set) != 2 || set["memory"] != "128MiB" || set["cpus"] != "3" {
		t.Fatalf("Changes = %v, %v", set, err)
	}
	edited.Template = "debian"
	if _, err := Changes(current, edited); err == nil || !strings.Contains(err.Error(), "only cpus, memory, processes") {
		t.Errorf("a template change was accepted: %v", err)
	}
}

func sampleVM() *Definition {
	d := sample()
	d.Type, d.Class, d.Rootfs = TypeVM, "qemu", RootfsQcow2
	d.Disks = []Disk{{Name: "root", Path: "disks/root.qcow2", Kind: RootfsQcow2, Size: 1 << 30}}
	return d
}

func TestDiskSizesOnlyGrow(t *testing.T) {
	d := sampleVM()
	if err := d.Set("disk.root.size", "8GiB"); err != nil {
		t.Fatal(err)
	}
	if disk, _ := d.Disk("root"); disk.Size != 8<<30 {
		t.Errorf("root disk is %s after setting 8GiB", disk.Size)
	}
	for _, c := range []struct {
		def              *Definition
		key, value, want string
	}{
		{sampleVM(), "disk.root.size", "512MiB", "disks only grow"},
		{sampleVM(), "disk.root.size", "65537GiB", "use at most 64TiB"},
		{sampleVM(), "disk.root.size", "lots", "disk.root.size"},
		{sampleVM(), "disk.data.size", "2GiB", `no disk image named "data"`},
		{sample(), "disk.root.size", "2GiB", "web-1 has no disk quota"},
		{sample(), "disk", "2GiB", "web-1 has no disk quota"},
		{sampleVM(), "disk..size", "2GiB", "unknown key"},
	} {
		if err := c.def.Set(c.key, c.value); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("set %s=%s on a %s: err = %v, want one saying %q", c.key, c.value, c.def.Type, err, c.want)
		}
	}
	// config edit takes a changed size as the same key.
	current := sampleVM()
	edited := current.Clone()
	edited.Disks[0].Size = 4 << 30
	if set, err := Changes(current, edited); err != nil || len(set) != 1 || set["disk.root.size"] != "4GiB" {
		t.Errorf("Changes of a disk size = %v, %v", set, err)
	}
	edited.Disks[0].Path = "elsewhere.qcow2"
	if _, err := Changes(current, edited); err == nil {
		t.Error("a disk's path changed by config edit was accepted")
	}
}

func TestSetNetworkAndPublish(t *testing.T) {
	d := sample()
	if err := d.Set("network", "lan"); err != nil || len(d.Networks) != 1 || d.Networks[0] != "lan" {
		t.Fatalf("set network: %v, %v", err, d.Networks)
	}
	if err := d.Set("publish", "8080:80, 53:53/udp,"); err != nil || len(d.Publish) != 2 || d.Publish[1] != "53:53/udp" {
		t.Fatalf("set publish: %v, %v", err, d.Publish)
	}
	if err := d.Set("network", "Bad_Name"); err == nil || !strings.Contains(err.Error(), "network") {
		t.Errorf("a bad network name: %v", err)
	}
	if err := d.Set("network", "none"); err != nil || len(d.Networks) != 0 {
		t.Errorf("network none: %v, %v", err, d.Networks)
	}
	current := sample()
	edited := current.Clone()
	edited.Networks, edited.Publish = []string{"lan"}, []string{"8080:80/tcp"}
	if set, err := Changes(current, edited); err != nil || set["network"] != "lan" || set["publish"] != "8080:80/tcp" {
		t.Errorf("Changes of network and publish = %v, %v", set, err)
	}
}

// TestIntentsRoundTripAndUnknownOnesAreRefused: every operation's intent
// survives the file (the next daemon acts on it), a hand-edited unknown
// one loads broken with a line naming the field.
func TestIntentsRoundTripAndUnknownOnesAreRefused(t *testing.T) {
	for _, intent := range intents() {
		d := sample()
		d.Status.Intent, d.Status.IntentSnapshot = intent, "snap-1"
		data, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", intent, err)
		}
		if back.Status.Intent != intent || back.Status.IntentSnapshot != "snap-1" {
			t.Errorf("%s: read back as %+v", intent, back.Status)
		}
	}
	for field, status := range map[string]Status{
		"status.intent":         {State: api.StateStopped, Intent: "reboot"},
		"status.intentSnapshot": {State: api.StateStopped, Intent: IntentSnapshotDelete, IntentSnapshot: "../x"},
	} {
		d := sample()
		d.Status = status
		data, _ := d.Marshal()
		if _, err := Parse(data); err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("%+v: err = %v, want ErrInvalid naming %s", status, err, field)
		}
	}
}

func TestChrootIsolationIsValidatedAsAJail(t *testing.T) {
	jail := func() *Definition {
		d := sample()
		d.Type, d.Rootfs, d.Networks, d.Publish = TypeContainer, RootfsOverlay, nil, nil
		d.Security = Security{IDMap: "isolated", IDMapBase: idmap.IsolatedPool().First, Isolation: IsolationChroot}
		return d
	}
	if err := jail().Validate(); err != nil {
		t.Fatalf("a plain jail: %v", err)
	}
	cases := map[string]struct {
		edit func(*Definition)
		want string
	}{
		"unknown isolation": {func(d *Definition) { d.Security.Isolation = "zone" }, "security.isolation"},
		"shared id map":     {func(d *Definition) { d.Security.IDMap, d.Security.IDMapBase = "shared", 0 }, "security.idmap"},
		"nesting":           {func(d *Definition) { d.Security.Nesting = true }, "security.nesting"},
		"a network":         {func(d *Definition) { d.Networks = []string{"polyvisor0"} }, "networks"},
		"privileged":        {func(d *Definition) { d.Privileged, d.Rootfs = true, RootfsCopy }, "security"},
		"a vm":              {func(d *Definition) { d.Type, d.Rootfs = TypeVM, RootfsQcow2 }, "security"},
	}
	for name, c := range cases {
		d := jail()
		c.edit(d)
		err := d.Validate()
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrInvalid naming %q", name, err, c.want)
		}
	}
}
