#!/usr/bin/env bash
# Installs every host package polyvisor needs, with apt-get. Idempotent: it
# only touches apt when a package is missing.
set -euo pipefail

packages=(
  runc            # the OCI runtime of the container class
  crun            # the alternative runtime (--runtime crun), where the host's cgroups allow it
  busybox-static  # busybox template and the host check's canary
  debootstrap     # Debian templates
  qemu-system-x86 # VM guests: x86_64 (microvm), KVM or TCG
  qemu-system-arm # VM guests: aarch64 (virt), emulated
  qemu-system-misc # VM guests: riscv64 (virt), emulated
  qemu-utils      # qemu-img: qcow2 base disks and overlays
  e2fsprogs       # mke2fs -d: ext4 root disks without loop devices
  grub-pc-bin     # GRUB for PC BIOS: VM templates built with --firmware bios
  grub-common     # grub-mkimage, which links GRUB's core image
  xz-utils        # unpacking the kernel's payload into a vmlinux
  dnsmasq-base    # DHCP and DNS of managed networks (the binary alone, no system service)
  dnsmasq-utils   # dhcp_release: a deleted guest's lease goes with it
  nftables        # nft, to read polyvisor's NAT table (tests, admins)
  iproute2        # network namespaces in tests
  procps          # ps/pgrep for diagnostics
  chromium        # headless browser: the bench report.html test draws its charts
)

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
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
