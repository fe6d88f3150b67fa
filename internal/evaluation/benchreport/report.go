// Package benchreport is what `polyvisor bench` found on this host, and
// how it is shown: the terminal table, report.json, a self-contained
// report.html with charts, the claims about each class of virtualization
// (Claims) checked against the numbers, and `polyvisor advise`'s recommendation from them.
package benchreport

import (
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

// Version is the schema version of report.json: 2 added the interleaved
// rounds, the host's load and the intervals. ReadJSON still reads
// version 1 (OldestVersion), whose cells then have no intervals.
const Version = 2

// OldestVersion is the oldest schema version ReadJSON reads.
const OldestVersion = 1

// Report is one bench run. Every figure in it was measured in that run;
// nothing is a constant.
type Report struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	Command   string    `json:"command"` // the command line that produced it
	Size      string    `json:"size"`    // probe.SizeQuick, ...
	Host      Host      `json:"host"`
	// Classes are native first, then each class asked for, in order.
	Classes []Class `json:"classes"`
	// Rounds is how many interleaved rounds the probe ran: in each, native
	// and every class (peers too) ran it once, in an order rotated per
	// round, so that each ratio compares figures taken side by side in time.
	Rounds int `json:"rounds"`
	// StopReason says why the rounds stopped: the intervals were narrow
	// enough, the size's time budget was spent, or its round limit reached.
	StopReason string `json:"stopReason,omitempty"`
	// Load is how busy the host was with work other than bench's, before
	// and between the rounds.
	Load *HostLoad `json:"load,omitempty"`
	// Network is the TCP throughput of each network path, the bare veth
	// baseline first.
	Network []NetPath `json:"network,omitempty"`
}

// HostLoad is the host's load as bench saw it.
type HostLoad struct {
	Samples []LoadSample `json:"samples"`
	// Quiet is false when some sample found the host busy with other work;
	// Warnings then say how.
	Quiet    bool     `json:"quiet"`
	Warnings []string `json:"warnings,omitempty"`
}

// LoadSample is the host's load over one second while bench itself was
// idle (before the first round, between rounds).
type LoadSample struct {
	At    time.Time `json:"at"`
	Phase string    `json:"phase"` // "before", "after round 2"
	// Load1 is the one-minute load average.
	Load1 float64 `json:"load1"`
	// Busy is the fraction (0..1) of all CPUs' time spent on work other
	// than bench's own processes; Steal the fraction the hypervisor took.
	Busy  float64 `json:"busy"`
	Steal float64 `json:"steal"`
	// Top are the busiest other processes: "name (pid) 85%".
	Top []string `json:"top,omitempty"`
}

// Round is one class's probe in one round.
type Round struct {
	Probe *probe.Output `json:"probe,omitempty"`
	Error string        `json:"error,omitempty"`
}

// Host says which machine and software produced the report.
type Host struct {
	Hostname    string            `json:"hostname"`
	Kernel      string            `json:"kernel"`
	Arch        string            `json:"arch"`
	CPUModel    string            `json:"cpuModel"`
	CPUs        int               `json:"cpus"`
	MemoryBytes int64             `json:"memoryBytes"`
	Versions    map[string]string `json:"versions"` // polyvisor, qemu, runc
	// Accel says whether VMs run under KVM or TCG here, and why.
	Accel       string `json:"accel"`
	AccelReason string `json:"accelReason"`
}

// Class names.
const (
	Native    = "native"
	Container = "container"
	VM        = "vm"
	Emulation = "emulation"
	// Chroot is the plain jail: a container with no namespace but a
	// mount one, as a non-root user.
	Chroot = "chroot"
	// UML is User-Mode Linux: a guest kernel run as a host process.
	UML = "uml"
	// Bochs is the pure x86 emulator, for the host's own arch.
	Bochs = "bochs"
)

// EmulationOf names the emulation class of one foreign architecture
// (Debian's name): emulation-riscv64. Plain Emulation is the default
// foreign arch's (aarch64 on an x86_64 host).
func EmulationOf(debianArch string) string { return Emulation + "-" + debianArch }

// IsEmulation says whether a class emulates a foreign architecture.
func IsEmulation(name string) bool {
	return name == Emulation || strings.HasPrefix(name, Emulation+"-")
}

// PeerPrefix starts the Name of a peer's class (peer-runc, peer-qemu):
// not a polyvisor class but a program polyvisor is compared with, measured
// the same way. Claims and advice leave peers out.
const PeerPrefix = "peer-"

// Peer says whether the class is a peer's.
func (c *Class) Peer() bool { return strings.HasPrefix(c.Name, PeerPrefix) }

// Class is what was measured of one class of guest (or of the host itself,
// for Native).
type Class struct {
	Name  string `json:"name"`  // Native, Container, VM, Emulation
	Label string `json:"label"` // e.g. "vm (TCG: no /dev/kvm)", "emulation (aarch64 on x86_64, TCG)"
	Arch  string `json:"arch"`  // uname -m inside
	Accel string `json:"accel,omitempty"`
	// Works is false when the class cannot run here; Reason says why (from
	// host check, or the failure that stopped it).
	Works  bool   `json:"works"`
	Reason string `json:"reason,omitempty"`
	// Probe is the probe's output inside a fresh guest of the class; nil
	// with ProbeError when it failed.
	// It sums up Rounds: each result's Runs are its medians of the
	// rounds, in round order (NaN-free: a failed round is left out).
	Probe      *probe.Output `json:"probe,omitempty"`
	ProbeError string        `json:"probeError,omitempty"`
	// Rounds are the probe's output in each interleaved round: Rounds[i]
	// was taken in the same round as every other class's Rounds[i].
	Rounds []Round `json:"rounds,omitempty"`
	// Lifecycle figures, milliseconds: provision (create from template),
	// boot (start until ready), stop, delete. Not for Native.
	Lifecycle []Figure `json:"lifecycle,omitempty"`
	// Density is how many idle guests fit, and the host memory each takes.
	Density *Density `json:"density,omitempty"`
}

// Lifecycle figure names.
const (
	Provision = "provision"
	Boot      = "boot"
	Stop      = "stop"
	Delete    = "delete"
)

// Figure is a measured value: the median of Runs, with its spread, or an
// Error.
type Figure struct {
	Name           string    `json:"name"`
	Unit           string    `json:"unit"`
	HigherIsBetter bool      `json:"higherIsBetter"`
	Median         float64   `json:"median,omitempty"`
	Min            float64   `json:"min,omitempty"`
	Max            float64   `json:"max,omitempty"`
	Runs           []float64 `json:"runs,omitempty"`
	// CI is the interval of Median over Runs (MedianInterval).
	CI    *Interval `json:"ci,omitempty"`
	Error string    `json:"error,omitempty"`
}

// Density is the outcome of launching idle guests of a class.
type Density struct {
	Guests int `json:"guests"` // launched and running at once
	// BudgetBytes is the host memory the run allowed itself.
	BudgetBytes int64 `json:"budgetBytes"`
	// PerGuestBytes is the host memory each idle guest took: the growth of
	// the host's used memory divided by Guests.
	PerGuestBytes int64  `json:"perGuestBytes"`
	Error         string `json:"error,omitempty"`
}
