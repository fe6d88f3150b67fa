// Package peer runs what polyvisor is compared with on the same workload:
// runc run by hand on a copy of a polyvisor container's bundle, and QEMU
// run by hand with the very command line polyvisor gives its VM. Bench
// (internal/evaluate) and the benchmarks (internal/bench) use it.
package peer

import (
	"fmt"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// Names are the peers bench knows, in report order.
var Names = []string{"runc", "crun", "lxc", "podman", "incus", "qemu", "virsh"}

// VMPeers are the peers whose guests are VMs: bench gives them a VMEnv.
var VMPeers = []string{"qemu", "virsh"}

// New returns the Manager of the named peer.
func New(name string) (Manager, error) {
	switch name {
	case "virsh":
		return NewVirsh(), nil
	}
	return nil, fmt.Errorf("bench does not drive peer %q yet", name)
}

// Binary is the program a peer needs on the PATH.
func Binary(name string) string {
	switch name {
	case "qemu":
		return "qemu-system-" + arch.Host().QEMU
	case "lxc":
		return "lxc-start"
	}
	return name
}

// Installed says why a peer cannot run here (its program is not installed,
// and which package has it), or nil when it can.
func Installed(name string) error {
	_, err := hostreq.Lookup(Binary(name))
	return err
}
