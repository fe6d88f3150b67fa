package daemon

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

func TestRepairModesTightensAnOpenedStateDir(t *testing.T) {
	testgate.RequireRoot(t, "giving a guest dir the id map's group (a chown to another group)")
	state := t.TempDir()
	guests, templates := filepath.Join(state, "guests"), filepath.Join(state, "templates")
	g := filepath.Join(guests, "g1")
	if err := os.MkdirAll(g, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(templates, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := repairModes(state, guests, templates); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]os.FileMode{state: 0o711, guests: 0o711, templates: 0o700, g: 0o710} {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v (%v), want %04o", dir, st.Mode().Perm(), err, want)
		}
	}
	if st, _ := os.Stat(g); st.Sys().(*syscall.Stat_t).Gid != 1000000 {
		t.Errorf("guest dir group %d, want the id map's root group", st.Sys().(*syscall.Stat_t).Gid)
	}
}

// An isolated guest's directory is open to its own root, whose gid is the
// first of its range, also when its definition is broken.
func TestRepairModesGivesAnIsolatedGuestDirItsOwnRootGroup(t *testing.T) {
	testgate.RequireRoot(t, "giving a guest dir its root's group (a chown to another group)")
	state := t.TempDir()
	guests, templates := filepath.Join(state, "guests"), filepath.Join(state, "templates")
	base := idmap.IsolatedPool().First + 2*idmap.Size
	def := &guest.Definition{
		SchemaVersion: guest.SchemaVersion, Name: "iso", Type: guest.TypeContainer, Class: "container",
		Template: "busybox", Arch: "amd64", CPUs: 1, Memory: 64 << 20, Processes: 10, Rootfs: guest.RootfsOverlay,
		Security: guest.Security{IDMap: idmap.Isolated, IDMapBase: base},
	}
	for name, edit := range map[string]func([]byte) []byte{
		"iso":    func(b []byte) []byte { return b },
		"broken": func(b []byte) []byte { return append(b, "unknown: key\n"...) },
	} {
		dir := filepath.Join(guests, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		d := def.Clone()
		d.Name = name
		data, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, guest.FileName), edit(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(templates, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := repairModes(state, guests, templates); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"iso", "broken"} {
		st, err := os.Stat(filepath.Join(guests, name))
		if err != nil {
			t.Fatal(err)
		}
		if gid := st.Sys().(*syscall.Stat_t).Gid; gid != base || st.Mode().Perm() != 0o710 {
			t.Errorf("%s: guest dir group %d mode %04o, want %d and 0710", name, gid, st.Mode().Perm(), base)
		}
	}
}
