// Package probe holds the workloads polyvisor-probe runs wherever it is
// placed (the host, a container, a VM, an emulated guest) and the JSON it
// prints, so that every class is measured by the same code.
package probe

// Sizes scale every workload.
const (
	SizeQuick    = "quick"
	SizeDefault  = "default"
	SizeThorough = "thorough"
)

// Output is what one probe run prints, as JSON, on stdout.
type Output struct {
	Probe   string `json:"probe"`   // "polyvisor-probe"
	Version int    `json:"version"` // of this schema: 1
	Size    string `json:"size"`
	// Where it ran, as the probe sees it.
	Arch   string `json:"arch"`   // uname -m
	GOARCH string `json:"goarch"` // the build's
	Kernel string `json:"kernel"` // uname -r
	CPUs   int    `json:"cpus"`   // runtime.NumCPU
	// DiskDir is the directory the disk workloads used.
	DiskDir string `json:"diskDir,omitempty"`
	// DiskFS is the type of DiskDir's file system (ext4, xfs, tmpfs,
	// overlayfs, 9p, ...), or its statfs magic number in hex.
	DiskFS  string   `json:"diskFS,omitempty"`
	Results []Result `json:"results"`
}

// Result is one workload's figure: the median of Runs, or an Error (never
// a zero standing in for a failure).
type Result struct {
	Name           string    `json:"name"` // e.g. cpu.int, disk.seq_read
	Unit           string    `json:"unit"` // e.g. MiB/s, ns, IOPS
	HigherIsBetter bool      `json:"higherIsBetter"`
	Median         float64   `json:"median,omitempty"`
	Min            float64   `json:"min,omitempty"`
	Max            float64   `json:"max,omitempty"`
	Runs           []float64 `json:"runs,omitempty"`
	// Note says how it was measured when that matters to reading it
	// (e.g. "O_DIRECT refused by the file system: page cache used").
	Note  string `json:"note,omitempty"`
	Error string `json:"error,omitempty"`
}

// Workload names.
const (
	CPUInt       = "cpu.int"           // integer kernel, Mops/s
	CPUFloat     = "cpu.float"         // floating-point kernel, Mflops/s
	CPUHash      = "cpu.sha256"        // SHA-256 over a buffer, MiB/s
	MemCopy      = "mem.copy"          // memory copy bandwidth, MiB/s
	Syscall      = "syscall.getppid"   // one system call, ns (lower is better)
	ProcSpawn    = "proc.spawn"        // fork+exec+wait of a tiny program, µs (lower is better)
	DiskSeqWrite = "disk.seq_write"    // O_DIRECT 1 MiB blocks, MiB/s
	DiskSeqRead  = "disk.seq_read"     // O_DIRECT 1 MiB blocks, MiB/s
	DiskRandRead = "disk.rand_read_4k" // O_DIRECT 4 KiB random reads, IOPS
	DiskFsync    = "disk.fsync"        // 4 KiB write + fsync, µs (lower is better)
	NetTCP       = "net.tcp"           // TCP throughput to a peer, MiB/s
)
