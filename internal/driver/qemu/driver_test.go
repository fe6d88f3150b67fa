package qemu

import (
	"os"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/drivertest"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestConformance runs the driver suite against real QEMU (TCG here), the
// real monitor and agent, and a busybox VM template built for the occasion.
func TestConformance(t *testing.T) {
	testgate.RequireRoot(t, "VM templates and guests need root")
	h := drivertest.NewHost(t, template.TypeVM)
	l := h.Layout
	opts := Options{Layout: l, Monitor: h.Monitor(), Log: h.Log}
	d := New(opts)
	t.Cleanup(func() {
		d.Wait()
		os.RemoveAll(l.RunDir())
		// The guests' cgroups go with them; their parent is the test's.
		if err := cgroup.Remove(l.CgroupParent()); err != nil {
			t.Error(err)
		}
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
		Restart: func() driver.Driver {
			// The old daemon's connections die with it: a guest agent's
			// port takes one client at a time.
			d.agents.DropAll()
			return New(opts)
		},
		HostObjects: func(name string) []string {
			return []string{l.GuestRunDir(name), drivertest.CgroupDir(l.GuestCgroup(name))}
		},
	})
}
