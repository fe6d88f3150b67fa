package peer

import (
	"context"
	"io"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Manager is a guest manager polyvisor is compared with (LXC, podman,
// Incus, libvirt, raw runc, raw QEMU), driven by bench on the same busybox
// tree and the same probe as polyvisor's own classes. Bench times Create,
// Start, Stop and Delete, keeps one guest running through its interleaved
// rounds to run the probe in with Exec, and reads the idle memory of a
// running guest's PIDs.
//
// A Manager owns everything it makes: its images, guests, storage,
// networks and any daemon it starts lie under Env.Dir or are removed by
// Close, which runs even after a failed Setup. Its guests have no network
// (the probe's workloads need none), so no peer touches the host's.
type Manager interface {
	// Setup gets the peer ready to create guests: it imports the tree
	// as the peer's image, starts a private daemon where the peer needs
	// one. It is not timed.
	Setup(ctx context.Context, env Env) error
	// Create provisions guest id from the image, stopped.
	Create(ctx context.Context, id string) error
	// Start boots guest id and returns once it is ready: a command can
	// run in it (Exec would succeed).
	Start(ctx context.Context, id string) error
	// Stop stops running guest id; Delete removes stopped guest id.
	Stop(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
	// Exec runs argv in running guest id, with stdin (nil: none), and
	// returns its exit code; err is for a failure to run it at all.
	Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// PIDs are the host processes that make running guest id: its
	// monitor (conmon, lxc monitor, QEMU) and everything in the guest.
	PIDs(ctx context.Context, id string) ([]int, error)
	// Close removes every guest, image, storage pool, network and daemon
	// the manager made, and says what it could not remove.
	Close(ctx context.Context) error
}

// Env is what a Manager is given to work with.
type Env struct {
	// Dir is a fresh directory of the manager's own, removed after Close.
	Dir string
	// RootTar is a tar of the busybox tree polyvisor's containers run,
	// owned by root (uid 0) as a guest sees it; RootFS is the same tree
	// unpacked, owned by the shared id map's base (idmap.Default()): a
	// peer that maps ids the same way may use it as a lower dir, read
	// only.
	RootTar string
	RootFS  string
	// CPUs and MemoryMiB are what each guest may use: every host CPU, as
	// polyvisor's bench guests have.
	CPUs      int
	MemoryMiB int
	// VM is set for a peer of the VM class: what polyvisor's VM of the
	// same template boots.
	VM *VMEnv
	// Spec is the OCI config.json of a polyvisor container of the same
	// template (ContainerSpecOf), for the raw runtimes (runc, crun): they
	// run a copy of it on an overlay of RootFS.
	Spec *specs.Spec
}

// VMEnv is a polyvisor VM's boot, read from its running QEMU.
type VMEnv struct {
	// Argv is QEMU's argv (see QEMUArgs to run it elsewhere).
	Argv []string
	// Base is the qcow2 base disk the VM's overlay stands on, read only.
	Base string
	// DiskBytes is the virtual size of each guest's root overlay, larger
	// than the base's so that the probe's disk file fits (bench grows the
	// guest's root file system into it through the agent); 0 keeps the
	// base's.
	DiskBytes int64
	// Kernel, Initrd and Append are -kernel, -initrd and -append's values.
	Kernel, Initrd, Append string
	// Accel is "kvm" or "tcg".
	Accel string
	// Agent is how the guest's agent is reached: a virtio-serial port
	// named AgentPort ("org.polyvisor.agent"), spoken to with
	// internal/agent's client over the port's unix socket.
	AgentPort string
}

// Timeouts bench gives each step; a peer's own waits stay below them.
const (
	StartTimeout = 5 * time.Minute
	StepTimeout  = 2 * time.Minute
)
