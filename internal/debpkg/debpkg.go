// Package debpkg fetches and unpacks Debian binary packages of any architecture Debian ships,
// with the host's apt and dpkg-deb: apt-get download PKG:ARCH through an apt configuration of
// polyvisor's own per architecture (its sources made from the host's Debian mirror, its lists
// and cache under the cache directory), and dpkg-deb to unpack. Nothing is installed on the
// host, and neither its apt sources nor dpkg's architectures change.
package debpkg

import (
	"debug/elf"
	"errors"
	"fmt"

	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// DefaultCacheDir is where polyvisor keeps the packages it downloads.
const DefaultCacheDir = "/var/cache/polyvisor/debs"

// ErrArchUnavailable says that no Debian release on the host's mirror, from the host's own
// release on, offers packages for an architecture.
var ErrArchUnavailable = errors.New("architecture not offered by Debian's releases on the host's mirror")

// debianName matches the package and architecture names we pass to apt; it keeps a name from
// being read as an option or a pattern.
var debianName = lazyre.New(`^[a-z0-9][a-z0-9.+-]*$`)

// validName fails unless name is a plain Debian package or architecture name.
func validName(kind, name string) error {
	if !debianName().MatchString(name) {
		return fmt.Errorf("invalid %s name %q", kind, name)
	}
	return nil
}

// ELFMachine returns the ELF machine of the executables of the Debian architecture arch, for
// checking that a binary fits the guest it goes into.
func ELFMachine(arch string) (elf.Machine, error) {
	switch arch {
	case "amd64":
		return elf.EM_X86_64, nil
	case "arm64":
		return elf.EM_AARCH64, nil
	case "riscv64":
		return elf.EM_RISCV, nil
	case "armhf", "armel":
		return elf.EM_ARM, nil
	case "i386":
		return elf.EM_386, nil
	case "ppc64el":
		return elf.EM_PPC64, nil
	case "s390x":
		return elf.EM_S390, nil
	}
	return elf.EM_NONE, fmt.Errorf("no known ELF machine for Debian architecture %q", arch)
}
