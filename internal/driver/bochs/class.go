package bochs

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The optional abilities the Bochs driver has, as Capabilities says.
var (
	_ driver.Execer        = (*Driver)(nil)
	_ driver.Consoler      = (*Driver)(nil)
	_ driver.Sweeper       = (*Driver)(nil)
	_ driver.UsageReporter = (*Driver)(nil)
)

// Name implements driver.Driver.
func (d *Driver) Name() string { return Class }

// Type implements driver.Driver.
func (d *Driver) Type() string { return guest.TypeVM }

// Capabilities implements driver.Driver: a console, exec through the agent
// on the second serial line, one network, and usage from the guest's
// cgroup. No snapshot, copy, export or disk growth.
func (d *Driver) Capabilities() api.Capabilities {
	return api.Capabilities{Exec: true, Console: true, Networks: true, Usage: true, Arches: []string{"amd64"}}
}

// maxCPUs is the most CPUs a guest gets: Bochs emulates every CPU in its
// one thread, one instruction of each in turn, so each CPU more slows the
// others down.
const maxCPUs = 4

// maxMemory is the most RAM Bochs 2.7 gives a guest (megs: 1 to 2048).
const maxMemory = guest.Size(2 << 30)

// checkMachine refuses the CPUs, memory and NICs Bochs cannot emulate, at
// creation and again at start (config set may have changed them).
func checkMachine(def *guest.Definition) error {
	if def.CPUs > maxCPUs {
		return fmt.Errorf("%w: cpus %d: Bochs emulates all CPUs in one host thread; give at most %d", api.ErrInvalid, def.CPUs, maxCPUs)
	}
	if def.Memory%(1<<20) != 0 || def.Memory > maxMemory {
		return fmt.Errorf("%w: memory %s: Bochs takes whole MiB, up to %s; give a multiple of 1MiB no larger", api.ErrInvalid, def.Memory, maxMemory)
	}
	if len(def.Networks) > 1 {
		return fmt.Errorf("%w: network %s: a Bochs guest joins one network (its one e1000 NIC); give one", api.ErrInvalid, strings.Join(def.Networks, ","))
	}
	return nil
}

// Define implements driver.Driver: a Bochs VM's root disk is its own raw
// copy of the template's; it joins one network at most, and has no id map
// and no container confinement.
func (d *Driver) Define(def *guest.Definition, req api.GuestCreate) error {
	if req.Copy || req.Privileged {
		return fmt.Errorf("%w: --copy and --privileged are for containers; a Bochs VM's disk is always its own copy", api.ErrInvalid)
	}
	if req.Nesting || req.Capabilities != nil {
		return fmt.Errorf("%w: nesting and capabilities are for unprivileged containers; drop --nesting and --capabilities", api.ErrInvalid)
	}
	if req.IDMap != "" {
		return fmt.Errorf("%w: idmap: only unprivileged containers have an id map; drop --idmap", api.ErrInvalid)
	}
	if def.Arch != "" && def.Arch != "amd64" {
		return fmt.Errorf("%w: arch %s: Bochs emulates x86 PCs only; use --arch amd64, or --engine qemu for %s", api.ErrInvalid, def.Arch, def.Arch)
	}
	if err := checkMachine(def); err != nil {
		return err
	}
	if _, _, err := d.template(def); err != nil {
		return err
	}
	def.Rootfs = guest.RootfsRaw
	if req.Disk != "" {
		size, err := guest.ParseDiskQuota("disk", req.Disk)
		if err != nil {
			return err
		}
		if req.Disk == guest.NoDiskQuota {
			return fmt.Errorf("%w: disk: a vm's root disk has a size; give one, like 10GiB, or leave --disk out for the template's", api.ErrInvalid)
		}
		def.Disks = []guest.Disk{{Name: "root", Size: size}}
	}
	return nil
}

// View implements driver.Driver: a Bochs guest is emulation, always, with
// no accelerator (Bochs interprets; its driver is its engine's name).
func (d *Driver) View(def *guest.Definition, g *api.Guest) {
	g.Class = "emulation"
}

// handle is what Start records for Recover (guest.Status.Handle), as
// JSON: the monitor's socket of the agent's serial line.
type handle struct {
	Agent string `json:"agent"`
}

// encode writes h for guest.Status.Handle.
func (h handle) encode() string {
	data, _ := json.Marshal(h) // one string: it cannot fail
	return string(data)
}

// readHandle reads the handle Start wrote for def; a version this driver
// does not know is refused.
func readHandle(def *guest.Definition) (handle, error) {
	s := def.Status
	if s.HandleVersion != handleVersion {
		return handle{}, fmt.Errorf("guest %s: handle version %d: this polyvisor knows version %d; leave the guest running and upgrade polyvisor", def.Name, s.HandleVersion, handleVersion)
	}
	var h handle
	if err := json.Unmarshal([]byte(s.Handle), &h); err != nil {
		return handle{}, fmt.Errorf("guest %s: handle: %w", def.Name, err)
	}
	return h, nil
}

// Recover implements driver.Driver: Bochs keeps no state the daemon must
// repair; the agent's socket is the monitor's, dialled again at the next
// exec.
func (d *Driver) Recover(ctx context.Context, def *guest.Definition) error {
	if _, err := readHandle(def); err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	return nil
}

// AttachConsole implements driver.Consoler: the serial console, held by
// the monitor.
func (d *Driver) AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error) {
	return monitored.AttachConsole(ctx, def, d.runDir(def))
}

// Usage implements driver.UsageReporter: CPU time and memory of the
// guest's cgroup (Bochs's own included) and its tap's bytes. Bochs counts
// no disk bytes the host could read.
func (d *Driver) Usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, error) {
	return driver.CgroupUsage(d.cgroupPath(def), def)
}
