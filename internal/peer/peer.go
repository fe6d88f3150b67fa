// Package peer runs what polyvisor is compared with on the same workload:
// runc run by hand on a copy of a polyvisor container's bundle, and QEMU
// run by hand with the very command line polyvisor gives its VM. Bench
// (internal/evaluate) and the benchmarks (internal/bench) use it.
package peer

import (
	"fmt"
	"os/exec"

	"github.com/polyvisor/polyvisor/internal/arch"
)

// Names are the peers bench knows, in report order.
var Names = []string{"runc", "qemu", "lxc", "podman", "virsh"}

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

// Installed says why a peer cannot run here, or nil when its program is
// on the PATH.
func Installed(name string) error {
	bin := Binary(name)
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("not installed (%s not found)", bin)
	}
	return nil
}
