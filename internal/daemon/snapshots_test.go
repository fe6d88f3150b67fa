package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestCopyDefinitionGetsAnIdentityOfItsOwn(t *testing.T) {
	src := &guest.Definition{
		SchemaVersion: guest.SchemaVersion, Name: "web", Type: guest.TypeVM, Class: "qemu", Template: "busybox",
		Arch: "amd64", CPUs: 2, Memory: 512 << 20, Processes: 100, Rootfs: guest.RootfsQcow2,
		Disks:     []guest.Disk{{Name: "root", Path: "disks/root.qcow2", Kind: guest.RootfsQcow2, Size: 1 << 30}},
		Networks:  []string{"polyvisor0"},
		Publish:   []string{"8080:80/tcp"},
		MACs:      map[string]string{"polyvisor0": "52:54:00:12:34:56"},
		CreatedAt: time.Unix(1e9, 0),
		Status:    guest.Status{State: api.StateRunning, InitPID: 42, Pending: []string{"memory"}},
	}
	c := copyDefinition(src, "web2")
	if c.Name != "web2" || c.Status.State != api.StateStopped || c.Status.InitPID != 0 || len(c.Status.Pending) != 0 {
		t.Errorf("copy's name and status: %s %+v", c.Name, c.Status)
	}
	if len(c.Publish) != 0 || len(c.MACs) != 0 || len(c.Disks) != 0 || !c.CreatedAt.After(src.CreatedAt) {
		t.Errorf("copy keeps the source's ports %v, MACs %v, disks %v or creation time %v", c.Publish, c.MACs, c.Disks, c.CreatedAt)
	}
	if c.CPUs != 2 || c.Memory != src.Memory || c.Template != "busybox" || len(c.Networks) != 1 {
		t.Errorf("copy lost the source's settings: %+v", c)
	}
	if src.Name != "web" || len(src.Publish) != 1 || len(src.MACs) != 1 || len(src.Disks) != 1 {
		t.Errorf("copying changed the source: %+v", src)
	}
}

func TestSnapshotNames(t *testing.T) {
	for _, name := range []string{"s1", "before-upgrade", "a"} {
		if err := validateSnapshotName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "Bad", "1st", "a/b", "..", "x-", "a b", ".creating-x"} {
		if err := validateSnapshotName(name); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%q accepted (%v)", name, err)
		}
	}
}
