package drivertest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// Host is what a driver's conformance test runs on: freshly built binaries
// and a state dir of its own, with one busybox template built in it.
type Host struct {
	Bin    string // polyvisor-monitor and the guest agents
	Layout layout.Layout
	Log    *slog.Logger // discards: the suite's failures say what went wrong
}

// NewHost builds the binaries, lays out a state dir and builds the busybox
// template of type typ (template.TypeContainer or template.TypeVM).
func NewHost(t *testing.T, typ string) Host {
	t.Helper()
	tmp := t.TempDir()
	// A container's unprivileged root must traverse down to its rootfs.
	if err := testenv.OpenToSearch(tmp); err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.BuildBinaries(testenv.RepoRoot(), tmp)
	if err != nil {
		t.Fatal(err)
	}
	l := layout.New(filepath.Join(tmp, "state"))
	for _, dir := range []string{l.StateDir, l.GuestsDir(), l.TemplatesDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o711)
	}
	store := template.Store{Dir: l.TemplatesDir(), AgentDir: bin}
	if _, err := store.Build(context.Background(), template.Request{Source: "busybox", Type: typ}, func(string, int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	return Host{Bin: bin, Layout: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// Monitor is the path of the built polyvisor-monitor.
func (h Host) Monitor() string { return filepath.Join(h.Bin, "polyvisor-monitor") }

// CgroupDir is where a cgroup (a path as layout gives it) shows on this
// host: in its memory hierarchy under cgroup v1, in the unified one under
// v2. It is the host's object, which a driver's sweep must remove.
func CgroupDir(path string) string {
	if cgroup.Mode() == "v2" {
		return filepath.Join(cgroup.Root, path)
	}
	return filepath.Join(cgroup.Root, "memory", path)
}
