package daemon

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRepairModesTightensAnOpenedStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: giving a guest dir the id map's group needs root")
	}
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
