// Package arch names CPU architectures the three ways polyvisor meets
// them: Debian's (amd64, arm64: packages, templates), QEMU's and the
// kernel's (x86_64, aarch64: qemu-system-*, uname -m) and Go's (GOARCH,
// for the guest agent).
package arch

import (
	"fmt"
	"runtime"
	"sort"
)

// Arch is one architecture.
type Arch struct {
	Debian string // amd64
	QEMU   string // x86_64: qemu-system-x86_64, and what uname -m says
	GOARCH string // amd64
}

var known = []Arch{
	{Debian: "amd64", QEMU: "x86_64", GOARCH: "amd64"},
	{Debian: "arm64", QEMU: "aarch64", GOARCH: "arm64"},
	{Debian: "riscv64", QEMU: "riscv64", GOARCH: "riscv64"},
}

// Parse accepts either name (amd64 or x86_64, arm64 or aarch64, riscv64).
func Parse(name string) (Arch, error) {
	for _, a := range known {
		if name == a.Debian || name == a.QEMU {
			return a, nil
		}
	}
	var names []string
	for _, a := range known {
		names = append(names, a.Debian+"/"+a.QEMU)
	}
	sort.Strings(names)
	return Arch{}, fmt.Errorf("arch %q: use one of %v", name, names)
}

// Host is the architecture polyvisor runs on.
func Host() Arch {
	for _, a := range known {
		if a.GOARCH == runtime.GOARCH {
			return a
		}
	}
	return Arch{Debian: runtime.GOARCH, QEMU: runtime.GOARCH, GOARCH: runtime.GOARCH}
}

// All lists the architectures polyvisor can build VM guests for.
func All() []Arch { return append([]Arch(nil), known...) }
