package qmp

import "strconv"

// Command is one QMP command with its arguments. Each is a struct in this
// package, so a command's wire name and argument names are written exactly
// once; Raw is the way out for anything not listed here.
//
// The comment on each command names the type Run decodes its result into.
type Command interface {
	// qmpCommand returns the command's wire name and its arguments: a value
	// that marshals to a JSON object, or nil for none.
	qmpCommand() (name string, args any)
}

// connectionEnder is a command after which QEMU hangs up by design.
type connectionEnder interface{ endsConnection() }

// qmpCapabilities leaves capability negotiation mode; Dial sends it.
type qmpCapabilities struct{}

func (qmpCapabilities) qmpCommand() (string, any) { return "qmp_capabilities", nil }

// QueryStatus asks whether the guest's CPUs run. Result: StatusInfo.
type QueryStatus struct{}

func (QueryStatus) qmpCommand() (string, any) { return "query-status", nil }

// StatusInfo is the result of QueryStatus.
type StatusInfo struct {
	// Status is QEMU's RunState: "prelaunch" (started with -S, never run),
	// "running", "paused", "shutdown", "internal-error", "guest-panicked",
	// "inmigrate", "postmigrate", "suspended" and a few more.
	Status string `json:"status"`
	// Running is true while the guest's CPUs execute.
	Running bool `json:"running"`
}

// SystemPowerdown presses the guest's power button (ACPI or the board's
// equivalent); the guest decides whether and when to shut down. QEMU emits
// POWERDOWN. Result: none.
type SystemPowerdown struct{}

func (SystemPowerdown) qmpCommand() (string, any) { return "system_powerdown", nil }

// Quit makes QEMU exit at once, like pulling the plug. QEMU replies, emits
// SHUTDOWN and closes the connection. Should the connection end before the
// reply arrives, Run still reports success: QEMU did what was asked.
// Result: none.
type Quit struct{}

func (Quit) qmpCommand() (string, any) { return "quit", nil }
func (Quit) endsConnection()           {}

// Stop pauses the guest's CPUs (QEMU emits STOP). Result: none.
type Stop struct{}

func (Stop) qmpCommand() (string, any) { return "stop", nil }

// Cont resumes the guest's CPUs, or starts them for the first time after
// -S (QEMU emits RESUME). Result: none.
type Cont struct{}

func (Cont) qmpCommand() (string, any) { return "cont", nil }

// SystemReset resets the machine, like the reset button (QEMU emits RESET).
// Result: none.
type SystemReset struct{}

func (SystemReset) qmpCommand() (string, any) { return "system_reset", nil }

// QueryKVM asks whether this QEMU can use KVM and whether it does.
// Result: KVMInfo.
type QueryKVM struct{}

func (QueryKVM) qmpCommand() (string, any) { return "query-kvm", nil }

// KVMInfo is the result of QueryKVM.
type KVMInfo struct {
	// Enabled is true when the guest runs under KVM rather than TCG.
	Enabled bool `json:"enabled"`
	// Present is true when this QEMU binary was built with KVM support for
	// its target. It says nothing about /dev/kvm.
	Present bool `json:"present"`
}

// QueryCPUsFast lists the guest's virtual CPUs without interrupting them.
// Result: []CPUInfo.
type QueryCPUsFast struct{}

func (QueryCPUsFast) qmpCommand() (string, any) { return "query-cpus-fast", nil }

// CPUInfo is one element of QueryCPUsFast's result.
type CPUInfo struct {
	// CPUIndex is QEMU's index of the virtual CPU, from 0.
	CPUIndex int `json:"cpu-index"`
	// ThreadID is the host thread that runs it: a tid to pin or to measure.
	ThreadID int `json:"thread-id"`
	// Target is the guest architecture, as QEMU names it ("x86_64",
	// "aarch64", "riscv64", ...).
	Target string `json:"target"`
	// QOMPath is the CPU's path in QEMU's object tree.
	QOMPath string `json:"qom-path"`
}

// BlockResize grows (or shrinks) a disk image while the guest runs. Name
// the disk by NodeName (a -blockdev node-name) or by Device (a -drive id),
// not both. Result: none.
type BlockResize struct {
	Device   string `json:"device,omitempty"`
	NodeName string `json:"node-name,omitempty"`
	// Size is the new size in bytes.
	Size int64 `json:"size"`
}

func (c BlockResize) qmpCommand() (string, any) { return "block_resize", c }

// QueryBlock lists the machine's block devices. Result: []BlockInfo.
type QueryBlock struct{}

func (QueryBlock) qmpCommand() (string, any) { return "query-block", nil }

// BlockInfo is one element of QueryBlock's result.
type BlockInfo struct {
	// Device is the drive's id (-drive id=...); empty for a device set up
	// with -blockdev and -device only, which QDev then names.
	Device string `json:"device"`
	// QDev is the guest device's id or QOM path.
	QDev string `json:"qdev"`
	// Removable is true for a drive with media that can change (a CD-ROM).
	Removable bool `json:"removable"`
	// Inserted describes the medium; nil when the drive is empty.
	Inserted *BlockDeviceInfo `json:"inserted"`
}

// BlockDeviceInfo is the medium in a block device.
type BlockDeviceInfo struct {
	// File is the image's file name.
	File string `json:"file"`
	// NodeName is the top block node's name, for BlockResize and friends.
	NodeName string `json:"node-name"`
	// Driver is the format of the top node ("raw", "qcow2", ...).
	Driver string `json:"drv"`
	// ReadOnly is true for a read-only medium.
	ReadOnly bool `json:"ro"`
	// Image describes the image behind the top node.
	Image ImageInfo `json:"image"`
}

// ImageInfo describes one disk image.
type ImageInfo struct {
	// Filename is the image's file name.
	Filename string `json:"filename"`
	// Format is the image format ("raw", "qcow2", ...).
	Format string `json:"format"`
	// VirtualSize is the size the guest sees, in bytes.
	VirtualSize int64 `json:"virtual-size"`
	// ActualSize is the space the image takes on the host, in bytes.
	ActualSize int64 `json:"actual-size"`
}

// QueryVersion asks for QEMU's version. Result: VersionInfo.
type QueryVersion struct{}

func (QueryVersion) qmpCommand() (string, any) { return "query-version", nil }

// VersionInfo is the result of QueryVersion.
type VersionInfo struct {
	// QEMU is the upstream version number.
	QEMU VersionNumber `json:"qemu"`
	// Package is the distribution's build label, such as
	// "Debian 1:7.2+dfsg-7+deb12u18".
	Package string `json:"package"`
}

// VersionNumber is a QEMU release number, such as 7.2.22.
type VersionNumber struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Micro int `json:"micro"`
}

// HumanMonitorCommand runs one command of the human monitor (HMP), such as
// "info mtree", for what QMP does not offer. Its output is text for people
// and may change between releases: do not parse it. Result: string.
type HumanMonitorCommand struct {
	CommandLine string `json:"command-line"`
}

func (c HumanMonitorCommand) qmpCommand() (string, any) { return "human-monitor-command", c }

// Raw is any command by wire name, with Args marshalled as its arguments
// (nil for none). It is for tests and one-offs; a command a driver relies on
// deserves a struct above. Result: whatever the command returns.
type Raw struct {
	Name string
	Args any
}

func (c Raw) qmpCommand() (string, any) { return c.Name, c.Args }

// String returns the version as "major.minor.micro".
func (v VersionNumber) String() string {
	return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) + "." + strconv.Itoa(v.Micro)
}

// QueryBlockstats reads the I/O counters of the machine's block devices.
// Result: []BlockStats.
type QueryBlockstats struct{}

func (QueryBlockstats) qmpCommand() (string, any) { return "query-blockstats", nil }

// BlockStats is one element of QueryBlockstats' result: what the guest
// read and wrote through one device, since QEMU started.
type BlockStats struct {
	Device string `json:"device"`
	QDev   string `json:"qdev"`
	Stats  struct {
		ReadBytes  int64 `json:"rd_bytes"`
		WriteBytes int64 `json:"wr_bytes"`
	} `json:"stats"`
}
