package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestCreateRefusesBadLimits: the API's create refuses, before anything is
// looked up or made, limits no guest can have, with one line naming the
// field and the fix. A container's memory is bounded by the host too.
func TestCreateRefusesBadLimits(t *testing.T) {
	d := testDaemon(t)
	for _, c := range []struct {
		req  api.GuestCreate
		want string
	}{
		{api.GuestCreate{Memory: "99999TiB"}, "memory 99999TiB: the host has"},
		{api.GuestCreate{Type: "vm", Memory: "99999TiB"}, "memory 99999TiB: the host has"},
		{api.GuestCreate{Memory: "0"}, "memory 0: give at least"},
		{api.GuestCreate{CPUs: -1}, "cpus -1: give at least 1 CPU"},
		{api.GuestCreate{CPUs: 1000}, "cpus 1000: give at most"},
		{api.GuestCreate{Processes: -5}, "processes -5: give at least 1"},
	} {
		c.req.Name, c.req.Template = "web", "busybox"
		_, err := d.newDefinition(c.req)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: err = %v, want one line saying %q", c.req, err, c.want)
		}
	}
	// --force lifts the host's bound alone: the request goes on, to the
	// driver this daemon does not have.
	forced := api.GuestCreate{Name: "web", Template: "busybox", Memory: "99999TiB", Force: true}
	if _, err := d.newDefinition(forced); !errors.Is(err, api.ErrNotAvailable) {
		t.Errorf("forced memory: err = %v, want it past the memory checks", err)
	}
	forced.Memory = "0"
	if _, err := d.newDefinition(forced); err == nil || !strings.Contains(err.Error(), "memory 0: give at least") {
		t.Errorf("forced memory 0: err = %v, want it refused still", err)
	}
}
