// Package arch names CPU architectures the ways polyvisor meets them:
// Debian's (amd64, arm64: packages, templates), QEMU's (x86_64, aarch64,
// ppc64le, arm: --arch, bench labels), the guest kernel's (uname -m), the
// QEMU system emulator that runs it, and Go's (GOARCH, for the guest agent).
package arch

import (
	"fmt"
	"runtime"
	"sort"
)

// Arch is one architecture.
type Arch struct {
	Debian   string // amd64, ppc64el, armhf
	QEMU     string // x86_64, ppc64le, arm: QEMU's target name
	GOARCH   string // amd64, ppc64le, arm
	GOARM    string // for GOARCH arm, the ARM version the agent is built for (7: armhf is ARMv7)
	Emulator string // the QEMU system emulator: qemu-system-ppc64 runs ppc64le
	Uname    string // what uname -m says in a guest: armv7l for arm
}

var known = []Arch{
	{Debian: "amd64", QEMU: "x86_64", GOARCH: "amd64", Emulator: "qemu-system-x86_64", Uname: "x86_64"},
	{Debian: "arm64", QEMU: "aarch64", GOARCH: "arm64", Emulator: "qemu-system-aarch64", Uname: "aarch64"},
	{Debian: "riscv64", QEMU: "riscv64", GOARCH: "riscv64", Emulator: "qemu-system-riscv64", Uname: "riscv64"},
	{Debian: "ppc64el", QEMU: "ppc64le", GOARCH: "ppc64le", Emulator: "qemu-system-ppc64", Uname: "ppc64le"},
	{Debian: "s390x", QEMU: "s390x", GOARCH: "s390x", Emulator: "qemu-system-s390x", Uname: "s390x"},
	{Debian: "armhf", QEMU: "arm", GOARCH: "arm", GOARM: "7", Emulator: "qemu-system-arm", Uname: "armv7l"},
}

// Parse accepts Debian's name, QEMU's or the kernel's (amd64 or x86_64,
// ppc64el or ppc64le, armhf, arm or armv7l).
func Parse(name string) (Arch, error) {
	for _, a := range known {
		if name == a.Debian || name == a.QEMU || name == a.Uname {
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
	return Arch{Debian: runtime.GOARCH, QEMU: runtime.GOARCH, GOARCH: runtime.GOARCH, Emulator: "qemu-system-" + runtime.GOARCH, Uname: runtime.GOARCH}
}

// All lists the architectures polyvisor can build VM guests for.
func All() []Arch { return append([]Arch(nil), known...) }
