package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(bin, "subdir"), 0o755)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"tool", "/nonexistent:" + bin, filepath.Join(bin, "tool")},
		{"tool", "bin", filepath.Join(bin, "tool")}, // relative PATH entries are relative to the command's directory
		{"./bin/tool", "", filepath.Join(bin, "tool")},
		{filepath.Join(bin, "data"), "", filepath.Join(bin, "data")}, // starting it will say it is not executable
	} {
		got, err := lookPath(tc.name, tc.path, dir)
		if err != nil || got != tc.want {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q", tc.name, tc.path, got, err, tc.want)
		}
	}
	for _, name := range []string{"data", "subdir", "missing", "./missing"} {
		if _, err := lookPath(name, bin, dir); !errors.Is(err, errCommandNotFound) {
			t.Errorf("lookPath(%q) = %v, want not found", name, err)
		}
	}
}

func TestCommandEnvironment(t *testing.T) {
	cmd, _, err := command(ExecRequest{Command: []string{"sh"}, TTY: true, Env: []string{"PATH=/bin", "A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Path != "/bin/sh" || cmd.Dir != "/" {
		t.Fatalf("path %q dir %q: the request's PATH and / should apply", cmd.Path, cmd.Dir)
	}
	if got := lastValue(cmd.Env, "TERM"); got != "xterm" {
		t.Fatalf("TERM %q on a tty", got)
	}
}
