// Package peer drives what polyvisor is compared with on the same
// workload, each behind one Manager: runc and crun run by hand on a copy
// of a polyvisor container's bundle, LXC, podman and Incus on the same
// busybox tree, QEMU run by hand with the very command line polyvisor
// gives its VM, and libvirt with a domain equal to it. Bench
// (internal/evaluation/evaluate) and the benchmarks (test/bench) use it.
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
	case "runc", "crun":
		return NewOCI(name), nil
	case "qemu":
		return NewRawQEMU(), nil
	case "incus":
		return NewIncus(), nil
	case "lxc":
		return &LXC{}, nil
	case "podman":
		return &Podman{}, nil
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
