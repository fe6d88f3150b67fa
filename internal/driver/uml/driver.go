// Package uml is the driver of the paravirtualization class: each guest is
// a User-Mode Linux kernel (Debian's linux.uml) running as an ordinary
// host process under polyvisor-monitor, which holds its console and is
// its parent, so guests outlive the daemon. The guest's root disk is a
// ubd copy-on-write file over an ext4 image built once per container
// template; its agent talks over a serial line the monitor relays to a
// socket (monitor.Config.AgentSerial); its NIC is a tap on polyvisor's
// bridge.
//
// The class is "paravirtualization": UML is a port of Linux to Linux's
// own system-call interface. The guest kernel runs no privileged
// instruction and needs no hypervisor or emulated hardware; it asks the
// host kernel for what it needs (ptrace to run its processes, mmap for
// their memory, host files and taps for its devices), which is what a
// paravirtualized kernel does with hypercalls.
package uml

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Class is this driver's name, and the guest type it serves.
const Class = guest.TypeUML

// DisplayClass is the class users see.
const DisplayClass = "paravirtualization"

// KernelProgram is the host requirement of Debian's User-Mode Linux kernel
// (package user-mode-linux, /usr/bin/linux.uml).
const KernelProgram = "linux.uml"

// handleVersion is the version of what Start persists in guest.yaml.
const handleVersion = 1

// BootTimeout bounds how long a guest may take from the start of its
// kernel until its agent answers: a busybox guest takes about a second,
// a Debian one a few.
const BootTimeout = time.Minute

// Options configure the driver.
type Options struct {
	Layout  layout.Layout
	Monitor string // path of polyvisor-monitor; the guest agents lie beside it
	Log     *slog.Logger
}

// Driver runs UML guests.
type Driver struct {
	opts      Options
	log       *slog.Logger
	monitors  *monitored.Launcher
	templates template.Store

	agents agent.Pool // connected guest agents, by guest name
	// images serialises the building of template images in this daemon
	// (another daemon building the same one is safe too: see rootImage).
	images sync.Mutex
	canary canaryVerdict
}

// The optional abilities the UML driver has, as Capabilities says.
var (
	_ driver.Execer        = (*Driver)(nil)
	_ driver.Consoler      = (*Driver)(nil)
	_ driver.Snapshotter   = (*Driver)(nil)
	_ driver.Copier        = (*Driver)(nil)
	_ driver.Sweeper       = (*Driver)(nil)
	_ driver.UsageReporter = (*Driver)(nil)
)

// New returns the UML driver.
func New(opts Options) *Driver {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Driver{
		opts: opts, log: opts.Log.With("driver", Class),
		monitors:  &monitored.Launcher{Monitor: opts.Monitor},
		templates: template.Store{Dir: opts.Layout.TemplatesDir()},
	}
}

// Wait blocks until every monitor this daemon started has been reaped.
func (d *Driver) Wait() { d.monitors.Wait() }

// Name implements driver.Driver.
func (d *Driver) Name() string { return Class }

// Type implements driver.Driver.
func (d *Driver) Type() string { return guest.TypeUML }

// Capabilities implements driver.Driver: UML runs host-arch guests only,
// and its disk is copied while the guest is stopped.
func (d *Driver) Capabilities() api.Capabilities {
	return api.Capabilities{
		Exec: true, Console: true, Snapshots: true, Copy: true, Networks: true, Usage: true,
		Arches: []string{"amd64"},
	}
}

// Define implements driver.Driver: a UML guest's root disk is its own COW
// file over the template's ext4 image, of the image's size.
func (d *Driver) Define(def *guest.Definition, req api.GuestCreate) error {
	switch {
	case req.Copy || req.Privileged:
		return fmt.Errorf("%w: --copy and --privileged are for containers; a uml guest's disk is always its own COW file", api.ErrInvalid)
	case req.Disk != "":
		return fmt.Errorf("%w: disk: a uml guest's disk is its template image's size (%s, sparse); leave --disk out", api.ErrInvalid, guest.Size(RootSize))
	case req.Nesting || req.Capabilities != nil:
		return fmt.Errorf("%w: nesting and capabilities are for unprivileged containers; drop --nesting and --capabilities", api.ErrInvalid)
	case req.IDMap != "":
		return fmt.Errorf("%w: idmap: only unprivileged containers have an id map; drop --idmap", api.ErrInvalid)
	case req.Arch != "" && req.Arch != "amd64" && req.Arch != "x86_64":
		return fmt.Errorf("%w: arch %s: User-Mode Linux runs the host's arch (amd64) only; drop --arch", api.ErrInvalid, req.Arch)
	}
	def.Rootfs = guest.RootfsUBDCOW
	return nil
}

// View implements driver.Driver.
func (d *Driver) View(def *guest.Definition, g *api.Guest) { g.Class = DisplayClass }

// Paths of a guest's files.
func (d *Driver) guestDir(def *guest.Definition) string { return d.opts.Layout.GuestDir(def.Name) }
func (d *Driver) runDir(def *guest.Definition) string   { return d.opts.Layout.GuestRunDir(def.Name) }
func (d *Driver) agentSocket(def *guest.Definition) string {
	return filepath.Join(d.runDir(def), "agent.sock")
}
func (d *Driver) cgroupPath(def *guest.Definition) string {
	return d.opts.Layout.GuestCgroup(def.Name)
}

// rootCOW is the guest's COW file, relative to its directory.
const rootCOW = "disks/root.cow"

// cowPath is the guest's COW file.
func (d *Driver) cowPath(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), rootCOW)
}

// handle is what Start records for Recover (guest.Status.Handle), as
// JSON: the agent's socket and the kernel's temporary directory.
type handle struct {
	Agent  string `json:"agent"`
	TmpDir string `json:"tmpDir"`
}

// encode writes h for guest.Status.Handle.
func (h handle) encode() string {
	data, _ := json.Marshal(h) // two strings: it cannot fail
	return string(data)
}

// readHandle reads the handle Start wrote for def; a version this driver
// does not know is refused.
func (d *Driver) readHandle(def *guest.Definition) (handle, error) {
	s := def.Status
	if s.HandleVersion > handleVersion {
		return handle{}, fmt.Errorf("guest %s: handle version %d: this polyvisor knows version %d at most; leave the guest running and upgrade polyvisor", def.Name, s.HandleVersion, handleVersion)
	}
	h := handle{Agent: d.agentSocket(def), TmpDir: d.tmpDir(def)}
	if s.Handle == "" {
		return h, nil
	}
	if err := json.Unmarshal([]byte(s.Handle), &h); err != nil {
		return handle{}, fmt.Errorf("guest %s: handle: %w", def.Name, err)
	}
	return h, nil
}
