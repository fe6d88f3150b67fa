package qemu

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/driver/drivertest"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// TestConformance runs the driver suite against real QEMU (TCG here), the
// real monitor and agent, and a busybox VM template built for the occasion.
func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: VM templates and guests need root")
	}
	tmp := t.TempDir()
	bin, err := testenv.BuildBinaries(testenv.RepoRoot(), tmp)
	if err != nil {
		t.Fatal(err)
	}
	l := layout.New(filepath.Join(tmp, "state"))
	for _, dir := range []string{l.GuestsDir(), l.TemplatesDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	store := template.Store{Dir: l.TemplatesDir(), AgentDir: bin}
	ctx := context.Background()
	if _, err := store.Build(ctx, template.Request{Source: "busybox", Type: template.TypeVM}, func(string, int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	d := New(Options{Layout: l, Monitor: filepath.Join(bin, "polyvisor-monitor"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() {
		d.Wait()
		os.RemoveAll(l.RunDir())
	})
	drivertest.Run(t, drivertest.Fixture{
		Driver: d,
		Definition: func(name string) *guest.Definition {
			return &guest.Definition{
				SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeVM, Class: Class,
				Template: "busybox", Arch: arch.Host().Debian, CPUs: 1, Memory: 256 << 20, Processes: 1024,
				Rootfs: guest.RootfsQcow2, CreatedAt: time.Now(), Status: guest.Status{State: api.StateStopped},
			}
		},
		GuestDir: l.GuestDir,
	})
}
