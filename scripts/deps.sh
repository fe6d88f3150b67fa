#!/usr/bin/env bash
# Installs every host package polyvisor, its demo and its tests need, with
# apt-get. Idempotent: it only touches apt when a package is missing.
#
# The list is internal/hostreq's, package for package: a unit test compares
# the two, and `make deps-check` runs this script in a fresh Debian root and
# checks there that every declared program, file and directory is present.
# `scripts/deps.sh --list` prints the packages and changes nothing.
set -euo pipefail

packages=(
  runc               # containers: the default OCI runtime
  crun               # containers under --runtime crun, where the host's cgroups allow it
  busybox-static     # busybox templates, the container canary, VM initramfs
  debootstrap        # Debian templates
  qemu-system-x86    # x86_64 VMs, KVM or TCG
  qemu-system-arm    # emulated aarch64 guests
  qemu-system-misc   # emulated riscv64 guests
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
  lxc                # bench's LXC peer (lxc-create, lxc-start, lxc-attach, lxc-stop, lxc-destroy)
  podman             # bench's podman peer (run with --runtime runc: crun refuses hybrid cgroups)
  libvirt-clients    # bench's libvirt peer: virsh
  libvirt-daemon     # bench's libvirt peer: libvirtd, started by bench with a private config
  libvirt-daemon-driver-qemu # bench's libvirt peer: its QEMU driver
)

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all host packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${missing[*]}; run make deps as root" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --force-confold: lxc's postinst asks about /etc/default/lxc-net when it
# already exists; keep the host's.
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
echo "deps: done"
