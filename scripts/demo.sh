#!/usr/bin/env bash
# The main job on the embedded default: build the busybox and Debian
# templates, launch a container from each, show them running, look inside,
# and show that guests outlive a crashed daemon. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
pv=./bin/polyvisor
state=${POLYVISOR_STATE_DIR:-/var/lib/polyvisor}
export POLYVISOR_SOCKET=${POLYVISOR_SOCKET:-/run/polyvisor/polyvisor.sock}
log=/run/polyvisor/daemon.log
mkdir -p /run/polyvisor

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The demo's guests join no network: networking (bridges, dnsmasq, NAT) is
# shown in its own network namespace by make test, and the demo leaves the
# host's network as it found it.
start_daemon() {
  setsid "$pv" daemon --state-dir "$state" --default-network none >>"$log" 2>&1 </dev/null &
  disown
  for _ in $(seq 100); do
    "$pv" list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the daemon did not come up; see $log" >&2
  exit 1
}

step "daemon (state in $state, socket $POLYVISOR_SOCKET, log $log)"
if "$pv" list >/dev/null 2>&1; then echo "a daemon already serves the socket"; else start_daemon; echo "started"; fi

step "host check"
"$pv" host check

step "templates"
"$pv" template show busybox >/dev/null 2>&1 || "$pv" template build busybox
"$pv" template show debian >/dev/null 2>&1 || "$pv" template build debian:bookworm --name debian
"$pv" template show busybox.vm.amd64 >/dev/null 2>&1 || "$pv" template build busybox --type vm
"$pv" template show busybox.vm.arm64 >/dev/null 2>&1 || "$pv" template build busybox --type vm --arch aarch64
"$pv" template list

step "launch one container from each template"
for g in demo-busybox demo-debian; do "$pv" delete --force "$g" >/dev/null 2>&1 || true; done
"$pv" launch busybox demo-busybox --memory 64MiB
"$pv" launch debian demo-debian --memory 256MiB --cpus 1
"$pv" list

step "a VM (KVM only if a canary boots, else TCG) and a foreign-arch VM (aarch64, emulated)"
for g in demo-vm demo-arm; do "$pv" delete --force "$g" >/dev/null 2>&1 || true; done
"$pv" launch busybox demo-vm --type vm
"$pv" launch busybox demo-arm --type vm --arch aarch64
echo "uname -m in demo-vm: $("$pv" exec demo-vm -- uname -m); in demo-arm: $("$pv" exec demo-arm -- uname -m)"
"$pv" list

step "exec into the Debian guest: /etc/os-release"
"$pv" exec demo-debian -- cat /etc/os-release

step "user namespace: root inside, unprivileged on the host"
inside=$("$pv" exec demo-debian -- id -u)
pid=$("$pv" info demo-debian --format json | sed -n 's/^  "pid": \([0-9]*\),/\1/p')
host=$(awk '/^Uid:/ {print $2}' /proc/"$pid"/status)
echo "id -u inside: $inside; the host sees init (pid $pid) as uid $host"

step "a memory hog in the 64MiB busybox guest is killed inside it"
set +e
"$pv" exec demo-busybox -- sh -c 'tail /dev/zero'
echo "the hog's exit code: $? (137 = killed by the OOM killer)"
set -e
"$pv" list

step "snapshot and restore, then export the guest and import it back"
"$pv" delete --force demo-imported >/dev/null 2>&1 || true
"$pv" template delete demo-imported >/dev/null 2>&1 || true
"$pv" snapshot delete demo-busybox demo-snap >/dev/null 2>&1 || true
"$pv" exec demo-busybox -- sh -c 'echo before > /root/note'
"$pv" snapshot create demo-busybox demo-snap
"$pv" exec demo-busybox -- sh -c 'echo after > /root/note'
"$pv" stop demo-busybox
"$pv" snapshot restore demo-busybox demo-snap
work=$(mktemp -d)
"$pv" export demo-busybox "$work/demo-busybox.tar" --format tar
"$pv" import "$work/demo-busybox.tar" demo-imported --start
rm -rf "$work"
"$pv" start demo-busybox
echo "/root/note after the restore: $("$pv" exec demo-busybox -- cat /root/note); in the imported copy: $("$pv" exec demo-imported -- cat /root/note)"

step "kill -9 the daemon: guests keep running; a new daemon adopts them"
old=$(pgrep -xf "$pv daemon --state-dir $state --default-network none" | head -1 || true)
if [ -n "$old" ]; then
  kill -9 "$old"
  echo "killed daemon $old"
  start_daemon
  echo "started a new daemon"
else
  echo "the running daemon was not started by this script; leaving it alone"
fi
"$pv" list

step "a vSphere host beside the local guests: govmomi's simulator on loopback, added, listed, one VM moved here"
"$pv" host remove demo-esx >/dev/null 2>&1 || true
"$pv" delete --force demo-moved >/dev/null 2>&1 || true
# A VM template's id names its type and arch (NAME.vm.ARCH).
"$pv" template delete "demo-moved.vm.$(dpkg --print-architecture)" >/dev/null 2>&1 || true
sim_dir=$(mktemp -d)
# Each simulated VM's disk is a real (blank) VMDK, as an exported one is.
qemu-img create -q -f vmdk -o subformat=streamOptimized "$sim_dir/disk.vmdk" 64M
./bin/vcsim --password demo-password --disk "$sim_dir/disk.vmdk" >"$sim_dir/info" 2>"$sim_dir/log" &
sim=$!
stop_sim() { kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null; rm -rf "$sim_dir"; }
trap stop_sim EXIT
for _ in $(seq 100); do [ -s "$sim_dir/info" ] && break; sleep 0.1; done
sim_url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$sim_dir/info")
sim_fp=$(sed -n 's/.*"fingerprint":"\([^"]*\)".*/\1/p' "$sim_dir/info")
echo "simulator at $sim_url, certificate $sim_fp"
echo demo-password | "$pv" host add demo-esx "$sim_url" --password-stdin --insecure-fingerprint "$sim_fp"
"$pv" host list
"$pv" list
"$pv" stop --force demo-esx:ha-host_VM0
"$pv" move demo-esx:ha-host_VM0 --name demo-moved
echo "demo-esx:ha-host_VM0 and the local demo-moved, side by side:"
"$pv" info demo-esx:ha-host_VM0 --format json | grep -E '"(cpus|memory|mac|firmware)"'
"$pv" info demo-moved --format json | grep -E '"(cpus|memory|class)"'
"$pv" host remove demo-esx
stop_sim
trap - EXIT

step "polyvisor bench --quick: every class measured on this host, side by side"
"$pv" bench --quick
echo
echo "Try: $pv console demo-busybox   (Ctrl-a q detaches)"
echo "     $pv exec demo-debian -- bash"
echo "     $pv console demo-arm --log"
echo "     $pv advise --guest-os windows --priority disk"
echo "     $pv delete --force demo-busybox demo-debian demo-vm demo-arm demo-imported demo-moved"
