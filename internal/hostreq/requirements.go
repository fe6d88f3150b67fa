// Package hostreq declares everything polyvisor, its demo and its tests need
// from the host: each program, file and directory, the Debian package that
// provides it and the feature that needs it. It is the one list: make deps
// installs exactly its packages (a test compares scripts/deps.sh with it),
// `polyvisor host check` reports what is missing from it with the apt-get
// line that fixes it, and code and tests find host tools only through it, so
// an error that says "make deps does" is true by construction.
package hostreq

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is what sort of thing a requirement is.
type Kind string

// The kinds of requirement.
const (
	Program Kind = "program" // an executable found on the PATH (or in the sbin dirs)
	File    Kind = "file"    // a regular file at an absolute path
	Dir     Kind = "dir"     // a directory at an absolute path
)

// Use says who needs a requirement, which decides whether make deps installs it.
type Use string

// The uses of a requirement.
const (
	// Product: polyvisor itself, its demo and its tests; make deps installs it.
	Product Use = "product"
	// Tests: the test suite alone; make deps installs it too.
	Tests Use = "tests"
	// Peer: software bench compares polyvisor with (LXC, podman, libvirt,
	// Incus); make deps installs it, so that bench --peers all and its
	// test measure every peer, but the product runs without it.
	Peer Use = "peer"
	// Toolchain: what builds polyvisor: the Go toolchain of go.mod's
	// version, and node with npm for the web console; they do not come
	// from make deps.
	Toolchain Use = "toolchain"
)

// Requirement is one thing needed from the host.
type Requirement struct {
	Name    string `json:"name"`    // a program's name, or an absolute path
	Kind    Kind   `json:"kind"`    // program, file or dir
	Package string `json:"package"` // the Debian package that provides it ("" for the toolchain)
	Feature string `json:"feature"` // what needs it, as a user sees it
	Use     Use    `json:"use"`
}

// Installed reports whether make deps installs r's package.
func (r Requirement) Installed() bool { return r.Use == Product || r.Use == Tests || r.Use == Peer }

// GRUB's module directories and OVMF's descriptor, where Debian installs them.
const (
	GrubPCDir  = "/usr/lib/grub/i386-pc"
	GrubEFIDir = "/usr/lib/grub/x86_64-efi"
	// OVMFDescriptor is the firmware descriptor of OVMF without Secure Boot,
	// which QEMU's descriptor search (as libvirt's) finds UEFI for q35 by.
	OVMFDescriptor = "/usr/share/qemu/firmware/60-edk2-x86_64.json"
	// StaticBusybox is Debian's busybox-static: templates, the container
	// canary and VM initramfs copy it, so it must not need a libc.
	StaticBusybox = "/bin/busybox"
	// IncusDaemon is incusd, which Debian installs outside the PATH.
	IncusDaemon = "/usr/libexec/incus/incusd"
)

// All returns every declared requirement, in the order make deps lists
// their packages. Each call returns a new slice.
func All() []Requirement {
	return []Requirement{
		// Containers.
		{"runc", Program, "runc", "containers (the default OCI runtime)", Product},
		{"crun", Program, "crun", "containers under --runtime crun, where the host's cgroups allow it", Product},
		{"busybox", Program, "busybox-static", "busybox templates, the container canary and VM initramfs", Product},
		{StaticBusybox, File, "busybox-static", "busybox templates, the container canary and VM initramfs", Product},
		{"debootstrap", Program, "debootstrap", "Debian templates", Product},
		// Virtual machines and emulation.
		{"qemu-system-x86_64", Program, "qemu-system-x86", "x86_64 virtual machines (KVM or TCG)", Product},
		{"qemu-system-aarch64", Program, "qemu-system-arm", "emulated aarch64 guests", Product},
		{"qemu-system-riscv64", Program, "qemu-system-misc", "emulated riscv64 guests", Product},
		{"qemu-system-s390x", Program, "qemu-system-misc", "emulated s390x guests", Product},
		{"qemu-system-ppc64", Program, "qemu-system-ppc", "emulated ppc64le guests", Product},
		{"qemu-system-arm", Program, "qemu-system-arm", "emulated armhf guests", Product},
		{"linux.uml", Program, "user-mode-linux", "uml guests: the User-Mode Linux kernel", Product},
		{"bochs", Program, "bochs", "Bochs-engine VMs", Product},
		{"bochs-bin", Program, "bochs", "Bochs-engine VMs: the emulator the bochs wrapper runs", Product},
		{"/usr/share/bochs/BIOS-bochs-latest", File, "bochsbios", "Bochs-engine VMs: the BIOS", Product},
		{"/usr/share/vgabios/vgabios.bin", File, "vgabios", "Bochs-engine VMs: the VGA BIOS", Product},
		{"qemu-img", Program, "qemu-utils", "VM disks, snapshots, imports and exports", Product},
		{"qemu-io", Program, "qemu-utils", "tests: writing known data into VM disks", Tests},
		{"useradd", Program, "passwd", "the unprivileged user VMs' QEMU runs as, made at the first VM start", Product},
		{"mke2fs", Program, "e2fsprogs", "VM root disks (ext4 made without a loop device) and containers' disk quota images", Product},
		{"e2fsck", Program, "e2fsprogs", "growing a container's disk quota (config set disk=SIZE)", Product},
		{"resize2fs", Program, "e2fsprogs", "growing a container's disk quota (config set disk=SIZE)", Product},
		{"debugfs", Program, "e2fsprogs", "Bochs-engine VMs: the guest's name written into its own disk", Product},
		{"grub-mkimage", Program, "grub-common", "VM templates that boot by firmware (--firmware bios|uefi)", Product},
		{GrubPCDir, Dir, "grub-pc-bin", "VM templates that boot by PC BIOS (--firmware bios|uefi)", Product},
		{GrubEFIDir, Dir, "grub-efi-amd64-bin", "VM templates that boot by UEFI (--firmware bios|uefi)", Product},
		{OVMFDescriptor, File, "ovmf", "UEFI guests (--firmware uefi, imported UEFI appliances)", Product},
		{"mkfs.fat", Program, "dosfstools", "the EFI system partition of firmware-booted VM templates", Product},
		{"mcopy", Program, "mtools", "filling the EFI system partition without a mount", Product},
		{"mmd", Program, "mtools", "filling the EFI system partition without a mount", Product},
		{"cpio", Program, "cpio", "VM initramfs archives", Product},
		{"xz", Program, "xz-utils", "unpacking the kernel's payload into a vmlinux for VM templates", Product},
		{"zstd", Program, "zstd", "unpacking zstd-compressed kernels and modules of newer Debian suites", Product},
		{"apt-get", Program, "apt", "fetching kernels and packages of other architectures for VM templates", Product},
		{"apt-cache", Program, "apt", "finding kernels and packages of other architectures for VM templates", Product},
		{"apt-config", Program, "apt", "finding apt's package lists for VM templates", Product},
		{"dpkg", Program, "dpkg", "adding architectures for foreign VM templates", Product},
		{"dpkg-deb", Program, "dpkg", "unpacking kernels and modules for VM templates", Product},
		// Networks.
		{"dnsmasq", Program, "dnsmasq-base", "DHCP and DNS of managed networks", Product},
		{"dhcp_release", Program, "dnsmasq-utils", "releasing a deleted guest's address", Product},
		{"nft", Program, "nftables", "reading polyvisor's NAT table (tests, administrators)", Product},
		{"ip", Program, "iproute2", "network namespaces of the tests, and inspecting guests' links", Product},
		// Plain tools the code and tests run.
		{"nsenter", Program, "util-linux", "entering a test daemon's network namespace", Product},
		{"unshare", Program, "util-linux", "Bochs-engine VMs (Bochs in a network namespace of its own); bench's libvirt peer (libvirtd in namespaces of its own); tests: running a tool in a private mount namespace", Product},
		{"mount", Program, "mount", "bench's libvirt peer: its libvirtd's directories, bound in its own mount namespace", Peer},
		{"mkdir", Program, "coreutils", "bench's libvirt peer: mount points in its libvirtd's own mount namespace", Peer},
		{"cp", Program, "coreutils", "snapshots of containers (cp -a keeps whiteouts and xattrs)", Product},
		{"chroot", Program, "coreutils", "tests: running a built template's own shell inside its tree", Tests},
		{"sleep", Program, "coreutils", "isolated id maps: the short-lived process whose user namespace an idmapped mount takes; tests: a process to watch", Product},
		{"sh", Program, "dash", "config edit (runs $EDITOR) and tests that run shell commands", Product},
		{"bash", Program, "bash", "make deps, make deps-check and the demo script", Product},
		{"chromium", Program, "chromium", "tests: drawing bench's report.html headless", Tests},
		{"gcc", Program, "gcc", "tests: the race detector (go test -race needs cgo)", Tests},
		{"/usr/include/stdlib.h", File, "libc6-dev", "tests: the race detector (cgo links against the C library)", Tests},
		// The toolchain that builds the agent and the probe for each arch.
		{"go", Program, "", "building polyvisor, its agent and its probe", Toolchain},
		// The toolchain that builds the web console's files (make build).
		{"node", Program, "", "building the web console (make build)", Toolchain},
		{"npm", Program, "", "building the web console (make build: npm ci with web/package-lock.json)", Toolchain},
		// Peers bench compares with when they are installed.
		{"lxc-start", Program, "lxc", "bench's LXC peer", Peer},
		{"lxc-attach", Program, "lxc", "bench's LXC peer", Peer},
		{"lxc-stop", Program, "lxc", "bench's LXC peer", Peer},
		{"lxc-destroy", Program, "lxc", "bench's LXC peer", Peer},
		{"podman", Program, "podman", "bench's podman peer", Peer},
		{"virsh", Program, "libvirt-clients", "bench's libvirt peer", Peer},
		{"libvirtd", Program, "libvirt-daemon", "bench's libvirt peer", Peer},
		{"virt-qemu-run", Program, "libvirt-daemon-driver-qemu", "bench's libvirt peer (its QEMU driver)", Peer},
		// The libvirt vendor-host driver talks to any libvirtd over RPC; its
		// test runs a private libvirtd with an LXC domain beside a QEMU one.
		{"/usr/lib/libvirt/libvirt_lxc", File, "libvirt-daemon-driver-lxc", "tests: the libvirt host driver's LXC domain (libvirtd's lxc:/// driver)", Tests},
		// Debian bookworm has Incus only in bookworm-backports, which make
		// deps reaches through an apt configuration of its own.
		{IncusDaemon, File, "incus-base", "bench's Incus peer (incusd, containers only; bookworm has it in bookworm-backports)", Peer},
		{"incus", Program, "incus-client", "bench's Incus peer (the incus CLI; bookworm has it in bookworm-backports)", Peer},
	}
}

// Find returns the requirement declared under name.
func Find(name string) (Requirement, bool) {
	for _, r := range All() {
		if r.Name == name {
			return r, true
		}
	}
	return Requirement{}, false
}

// Packages returns the Debian packages make deps installs, each once, in
// declaration order.
func Packages() []string {
	var pkgs []string
	seen := map[string]bool{}
	for _, r := range All() {
		if r.Installed() && !seen[r.Package] {
			seen[r.Package] = true
			pkgs = append(pkgs, r.Package)
		}
	}
	return pkgs
}

// ListDiff compares the packages an install script lists with the declared
// ones and says, in one line, what the script fails to install (and what
// needs it) and what it installs that nothing declares; "" when they agree.
func ListDiff(script []string) string {
	var problems []string
	for _, pkg := range Packages() {
		if !slices.Contains(script, pkg) {
			var needs []string
			for _, r := range All() {
				if r.Package == pkg && r.Installed() {
					needs = append(needs, r.Name)
				}
			}
			problems = append(problems, fmt.Sprintf("does not install %s (%s needs it)", pkg, strings.Join(needs, ", ")))
		}
	}
	declared := Packages()
	for _, pkg := range script {
		if !slices.Contains(declared, pkg) {
			problems = append(problems, fmt.Sprintf("installs %s, which no requirement declares", pkg))
		}
	}
	return strings.Join(problems, "; ")
}
