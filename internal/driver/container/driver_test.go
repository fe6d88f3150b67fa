package container

import (
	"cmp"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/drivertest"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestConformance runs the driver suite against real runc, the real
// monitor and a busybox template built for the occasion, with a guest of
// the shared id map and one of an isolated map (its template read through
// an idmapped mount).
func TestConformance(t *testing.T) {
	testgate.RequireRoot(t, "containers need root")
	h := drivertest.NewHost(t, template.TypeContainer)
	l := h.Layout
	opts := Options{Layout: l, Monitor: h.Monitor(), Log: h.Log}
	d := New(opts)
	t.Cleanup(func() {
		d.Wait()
		cgroup.Remove(l.CgroupParent())
		os.RemoveAll(l.RunDir())
	})
	for _, security := range []guest.Security{{}, {IDMap: idmap.Isolated, IDMapBase: idmap.IsolatedPool().First + 7*idmap.Size}} {
		t.Run(cmp.Or(security.IDMap, "shared"), func(t *testing.T) {
			drivertest.Run(t, drivertest.Fixture{
				Driver: d,
				Definition: func(name string) *guest.Definition {
					return &guest.Definition{
						SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeContainer, Class: Class,
						Template: "busybox", Arch: template.HostArch(), CPUs: 1, Memory: 64 << 20, Processes: 64,
						Rootfs: guest.RootfsOverlay, Security: security, CreatedAt: time.Now(), Status: guest.Status{State: api.StateStopped},
					}
				},
				GuestDir: l.GuestDir,
				Restart:  func() driver.Driver { return New(opts) },
				// The quota image: its resize is what the suite can see.
				RootDisk: 64 << 20,
				HostObjects: func(name string) []string {
					return []string{l.GuestRunDir(name), filepath.Join(l.RuncRoot(), name), drivertest.CgroupDir(l.GuestCgroup(name))}
				},
			})
		})
	}
}
