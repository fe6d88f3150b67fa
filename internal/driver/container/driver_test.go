package container

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/driver/drivertest"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// TestConformance runs the driver suite against real runc, the real
// monitor and a busybox template built for the occasion.
func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: containers need root")
	}
	tmp := t.TempDir()
	if err := testenv.OpenToSearch(tmp); err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.BuildBinaries(testenv.RepoRoot(), tmp)
	if err != nil {
		t.Fatal(err)
	}
	l := layout.New(filepath.Join(tmp, "state"))
	for _, dir := range []string{l.GuestsDir(), l.TemplatesDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		os.Chmod(l.StateDir, 0o711)
	}
	ctx := context.Background()
	if _, err := (template.Store{Dir: l.TemplatesDir()}).Build(ctx, template.Request{Source: "busybox"}, func(string, int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	d := New(Options{Layout: l, Monitor: filepath.Join(bin, "polyvisor-monitor"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() {
		d.Wait()
		removeCgroup(l.CgroupParent())
		os.RemoveAll(l.RunDir())
	})
	drivertest.Run(t, drivertest.Fixture{
		Driver: d,
		Definition: func(name string) *guest.Definition {
			return &guest.Definition{
				SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeContainer, Class: Class,
				Template: "busybox", Arch: template.HostArch(), CPUs: 1, Memory: 64 << 20, Processes: 64,
				Rootfs: guest.RootfsOverlay, CreatedAt: time.Now(), Status: guest.Status{State: api.StateStopped},
			}
		},
		GuestDir: l.GuestDir,
	})
}
