package qmp

// Commands of a live migration with its storage: the destination serves
// its empty disks over NBD, the source mirrors its disks into them, then
// migrates the machine's RAM and device state (QEMU's "non-shared storage
// migration" recipe: docs/interop/live-block-operations, iotest 194).

// InetAddress is a TCP endpoint in QEMU's SocketAddressLegacy, as
// NBDServerStart takes it: Host is an IP without brackets, Port a number.
type InetAddress struct {
	Host string `json:"host"`
	Port string `json:"port"`
}

// socketAddressLegacy wraps an InetAddress as {"type":"inet","data":...}.
type socketAddressLegacy struct {
	Type string      `json:"type"`
	Data InetAddress `json:"data"`
}

// NBDServerStart starts QEMU's built-in NBD server on a TCP address.
// Result: none.
type NBDServerStart struct {
	Addr InetAddress
}

func (c NBDServerStart) qmpCommand() (string, any) {
	return "nbd-server-start", struct {
		Addr socketAddressLegacy `json:"addr"`
	}{socketAddressLegacy{Type: "inet", Data: c.Addr}}
}

// NBDServerStop stops the NBD server and removes its exports. Result: none.
type NBDServerStop struct{}

func (NBDServerStop) qmpCommand() (string, any) { return "nbd-server-stop", nil }

// NBDServerAdd exports a drive (Device, a -drive id) on the running NBD
// server under Name. On a QEMU waiting for an incoming migration it
// readies the drive for writing first, which block-export-add of QEMU
// 7.2 does not ("Block node is read-only"). Result: none.
type NBDServerAdd struct {
	Device   string `json:"device"`
	Name     string `json:"name"`
	Writable bool   `json:"writable"`
}

func (c NBDServerAdd) qmpCommand() (string, any) { return "nbd-server-add", c }

// DriveMirror starts a block job (its id JobID) that copies a disk
// (Device, a -drive id) into Target and then keeps the copy in step with
// the guest's writes; the job reports itself ready (BlockJobInfo.Ready)
// once both are the same. Result: none.
type DriveMirror struct {
	JobID  string `json:"job-id"`
	Device string `json:"device"`
	// Target is a file name or a URI such as nbd://host:port/export.
	Target string `json:"target"`
	// Format is the target's: raw for an NBD export (the server owns
	// the format).
	Format string `json:"format"`
	// Sync is "full" (everything the guest sees), "top" or "none".
	Sync string `json:"sync"`
	// Mode is "existing" (open Target) or "absolute-paths" (create it).
	Mode string `json:"mode"`
}

func (c DriveMirror) qmpCommand() (string, any) { return "drive-mirror", c }

// QueryBlockJobs lists the running block jobs. Result: []BlockJobInfo.
type QueryBlockJobs struct{}

func (QueryBlockJobs) qmpCommand() (string, any) { return "query-block-jobs", nil }

// BlockJobInfo is one element of QueryBlockJobs' result.
type BlockJobInfo struct {
	Device string `json:"device"` // the job's id
	Type   string `json:"type"`
	Len    int64  `json:"len"`    // bytes to copy, so far as known
	Offset int64  `json:"offset"` // bytes copied
	Ready  bool   `json:"ready"`  // a mirror's copy is in step with its source
	Status string `json:"status"` // "running", "ready", "concluded"...
	Error  string `json:"error"`  // set once a job failed
}

// BlockJobCancel ends a block job. A mirror that was ready ends with a
// consistent copy in its target, up to the source's last write; Force
// ends it at once even while it is not. Result: none.
type BlockJobCancel struct {
	Device string `json:"device"` // the job's id
	Force  bool   `json:"force,omitempty"`
}

func (c BlockJobCancel) qmpCommand() (string, any) { return "block-job-cancel", c }

// MigrateIncoming starts listening for an incoming migration on URI
// ("tcp:IP:PORT", port 0 for any), on a QEMU started with -incoming
// defer. Result: none.
type MigrateIncoming struct {
	URI string `json:"uri"`
}

func (c MigrateIncoming) qmpCommand() (string, any) { return "migrate-incoming", c }

// Migrate sends the machine's state to URI ("tcp:IP:PORT"), in the
// background; QueryMigrate follows it. Result: none.
type Migrate struct {
	URI string `json:"uri"`
}

func (c Migrate) qmpCommand() (string, any) { return "migrate", c }

// MigrateCancel cancels the outgoing migration; the guest runs on here.
// Result: none.
type MigrateCancel struct{}

func (MigrateCancel) qmpCommand() (string, any) { return "migrate_cancel", nil }

// MigrateSetCapabilities turns migration capabilities on or off, by
// name ("return-path", "events"...). Result: none.
type MigrateSetCapabilities struct {
	Capabilities map[string]bool
}

func (c MigrateSetCapabilities) qmpCommand() (string, any) {
	type capability struct {
		Capability string `json:"capability"`
		State      bool   `json:"state"`
	}
	caps := []capability{}
	for name, on := range c.Capabilities {
		caps = append(caps, capability{name, on})
	}
	return "migrate-set-capabilities", struct {
		Capabilities []capability `json:"capabilities"`
	}{caps}
}

// MigrateSetParameters sets migration parameters; zero fields are left
// as they are. Result: none.
type MigrateSetParameters struct {
	// MaxBandwidth caps the migration stream, in bytes per second (QEMU
	// 7.2's default is 32 MiB/s).
	MaxBandwidth int64 `json:"max-bandwidth,omitempty"`
	// DowntimeLimit is the longest pause the final copy may take, in ms.
	DowntimeLimit int64 `json:"downtime-limit,omitempty"`
}

func (c MigrateSetParameters) qmpCommand() (string, any) { return "migrate-set-parameters", c }

// QueryMigrate reads a migration's progress, on either side.
// Result: MigrationInfo.
type QueryMigrate struct{}

func (QueryMigrate) qmpCommand() (string, any) { return "query-migrate", nil }

// MigrationInfo is the result of QueryMigrate.
type MigrationInfo struct {
	// Status is "none", "setup", "active", "device", "completed",
	// "failed", "cancelling", "cancelled" and a few more; empty before
	// any migration.
	Status string `json:"status"`
	// TotalTime is the source's time from start to completion, in ms.
	TotalTime int64 `json:"total-time"`
	// Downtime is how long the guest was stopped for the final copy, in ms.
	Downtime int64         `json:"downtime"`
	RAM      *MigrationRAM `json:"ram"`
	// ErrorDesc says why a migration failed.
	ErrorDesc string `json:"error-desc"`
	// SocketAddress, on the destination, is where it listens: the port
	// a MigrateIncoming of port 0 got.
	SocketAddress []InetAddressTyped `json:"socket-address"`
}

// MigrationRAM is a migration's RAM progress.
type MigrationRAM struct {
	Transferred int64 `json:"transferred"` // bytes sent
	Total       int64 `json:"total"`       // the guest's RAM
}

// InetAddressTyped is a flat SocketAddress: Type "inet" with a host and a port.
type InetAddressTyped struct {
	Type string `json:"type"`
	Host string `json:"host"`
	Port string `json:"port"`
}
