#!/usr/bin/env bash
# Installs every host package polyvisor, its demo and its tests need, with
# apt-get. Idempotent: it only touches apt when a package is missing.
#
# The list is internal/hostreq's, package for package: a unit test compares
# the two, and `make deps-check` runs this script in a fresh Debian root and
# checks there that every declared program, file and directory is present.
# `scripts/deps.sh --list` prints the packages and changes nothing: the
# host release's packages, then those taken from its backports.
set -euo pipefail

packages=(
  runc               # containers: the default OCI runtime
  crun               # containers under --runtime crun, where the host's cgroups allow it
  busybox-static     # busybox templates, the container canary, VM initramfs
  debootstrap        # Debian templates
  qemu-system-x86    # x86_64 VMs, KVM or TCG
  qemu-system-arm    # emulated aarch64 guests
  qemu-system-misc   # emulated riscv64 and s390x guests
  qemu-system-ppc    # emulated ppc64le guests (pseries, with its SLOF firmware)
  user-mode-linux    # uml guests: Linux as a user process (/usr/bin/linux)
  bochs              # Bochs-engine VMs: the pure x86 emulator, headless
  bochsbios          # Bochs-engine VMs: Bochs's BIOS (BIOS-bochs-latest)
  vgabios            # Bochs-engine VMs: the VGA BIOS Bochs loads even with no display
  qemu-utils         # qemu-img: VM disks, snapshots, imports, exports; qemu-io for tests
  passwd             # useradd: the unprivileged user VMs' QEMU runs as
  e2fsprogs          # mke2fs -d: ext4 root disks without loop devices; containers' quota images (mke2fs, e2fsck, resize2fs)
  grub-common        # grub-mkimage, which links GRUB's images
  grub-pc-bin        # GRUB for PC BIOS: VM templates built with --firmware bios|uefi
  grub-efi-amd64-bin # GRUB for UEFI: VM templates built with --firmware bios|uefi
  ovmf               # UEFI firmware for q35 guests, found through QEMU's descriptors
  dosfstools         # mkfs.fat: the EFI system partition
  mtools             # mcopy, mmd: filling the EFI system partition without a mount
  cpio               # VM initramfs archives
  xz-utils           # unpacking the kernel's payload into a vmlinux
  zstd               # zstd-compressed kernels and modules of newer Debian suites
  apt                # apt-get, apt-cache, apt-config: kernels and packages of other architectures
  dpkg               # dpkg, dpkg-deb: foreign architectures, unpacking kernels and modules
  dnsmasq-base       # DHCP and DNS of managed networks (the binary alone, no system service)
  dnsmasq-utils      # dhcp_release: a deleted guest's lease goes with it
  nftables           # nft, to read polyvisor's NAT table (tests, admins)
  iproute2           # ip: network namespaces in tests
  util-linux         # nsenter, unshare
  mount              # mount: the libvirt peer's binds in its own mount namespace
  coreutils          # cp -a for container snapshots, chroot, sleep
  dash               # sh
  bash               # this script, make deps-check, the demo
  chromium           # headless browser: the bench report.html test draws its charts
  gcc                # make test's race detector (go test -race needs cgo)
  libc6-dev          # make test's race detector: the C library cgo links against
  lxc                # bench's LXC peer (lxc-create, lxc-start, lxc-attach, lxc-stop, lxc-destroy)
  podman             # bench's podman peer (run with --runtime runc: crun refuses hybrid cgroups)
  libvirt-clients    # bench's libvirt peer: virsh
  libvirt-daemon     # bench's libvirt peer: libvirtd, started by bench with a private config
  libvirt-daemon-driver-qemu # bench's libvirt peer: its QEMU driver
  libvirt-daemon-driver-lxc # tests: the libvirt vendor-host driver's LXC domain (libvirtd's lxc:/// driver)
)

# Packages Debian ships for this release only in its backports (bookworm has
# no Incus). They come through an apt configuration of polyvisor's own: its
# own sources list (the host's Debian sources plus CODENAME-backports on the
# same mirror), lists and cache under backports_dir. The host's /etc/apt and
# its package lists are left as they are.
backports=(
  incus-base         # bench's Incus peer: incusd, container-only (package incus would replace the host's QEMU 7.2 with backports' for its VMs)
  incus-client       # bench's Incus peer: the incus CLI
)
backports_dir=/var/cache/polyvisor/apt-backports

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${packages[@]}" "${backports[@]}"
  exit 0
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
missing_backports=()
for p in "${backports[@]}"; do
  installed "$p" || missing_backports+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && [ ${#missing_backports[@]} -eq 0 ]; then
  echo "deps: all host packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${missing[*]} ${missing_backports[*]}; run make deps as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# --force-confold: lxc's postinst asks about /etc/default/lxc-net when it
# already exists; keep the host's.
install_opts=(-y -qq --no-install-recommends -o Dpkg::Options::=--force-confold)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install "${install_opts[@]}" "${missing[@]}" >/dev/null
fi

if [ ${#missing_backports[@]} -gt 0 ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ -z "$codename" ]; then
    echo "deps: /etc/os-release names no VERSION_CODENAME, so ${missing_backports[*]} cannot come from its backports; install them by hand" >&2
    exit 1
  fi
  # The host's Debian sources (the release, its updates and security), as
  # apt reads them from the host's own configuration: the mirror is the
  # host's. --no-release-info: read from the sources alone, lists or none.
  sources=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
    awk -v c="$codename" '$2 == c || $2 == c "-updates" || $2 == c "-security"' | sort -u)
  mirror=$(awk -v c="$codename" '$2 == c { print $1; exit }' <<<"$sources")
  if [ -z "$mirror" ]; then
    echo "deps: the host's apt sources have no $codename entry to take the mirror of $codename-backports from; add one, or install ${missing_backports[*]} by hand" >&2
    exit 1
  fi
  signed_by=""
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && signed_by="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
  mkdir -p "$backports_dir/lists/partial" "$backports_dir/cache/archives/partial" "$backports_dir/sources.list.d"
  {
    echo "# Written by polyvisor's scripts/deps.sh: the host's Debian sources and $codename-backports."
    awk -v s="$signed_by" '{ print "deb " s $1 " " $2 " " $3 }' <<<"$sources"
    echo "deb $signed_by$mirror $codename-backports main"
  } >"$backports_dir/sources.list"
  apt_opts=(
    -o "Dir::Etc::sourcelist=$backports_dir/sources.list"
    -o "Dir::Etc::sourceparts=$backports_dir/sources.list.d"
    -o "Dir::State::Lists=$backports_dir/lists"
    -o "Dir::Cache=$backports_dir/cache"
  )
  echo "deps: installing ${missing_backports[*]} from $codename-backports ($mirror)"
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" install "${install_opts[@]}" -t "$codename-backports" "${missing_backports[@]}" >/dev/null
  apt-get "${apt_opts[@]}" clean
fi
echo "deps: done"
