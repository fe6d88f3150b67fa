// Package guestnet holds what a guest built from polyvisor's templates runs
// to join its network: busybox's udhcpc on eth0, started by init, and the
// script udhcpc calls to apply a lease. Container and VM templates install
// the same two files, so every class gets its address the same way, by
// DHCP from the network's dnsmasq.
package guestnet

// Paths inside the guest's tree, without the leading slash.
const (
	LauncherPath = "usr/lib/polyvisor/dhcp"
	ScriptPath   = "usr/lib/polyvisor/udhcpc.script"
)

// InittabLine starts the launcher from busybox init, again whenever it ends.
const InittabLine = "::respawn:/" + LauncherPath + "\n"

// NoNetworkEnv is in the environment of a container's init when the guest
// joins no network: its launcher then sleeps at once instead of watching
// for an eth0 that will not come (a guest's networks are fixed while it
// runs).
const NoNetworkEnv = "POLYVISOR_NETWORK=none"

// Launcher waits a little for eth0 to have a carrier (the host plugs it in
// just after the guest's init starts; a DHCPDISCOVER sent before the host's
// end is up is lost, and udhcpc waits seconds to send another), then runs
// udhcpc in the foreground. A guest with no network sleeps instead, so
// that init does not respawn it every second: at once when its
// environment says so (NoNetworkEnv), else after 10 s of watching, each
// look a fork or two.
const Launcher = `#!/bin/sh
# Written by polyvisor: DHCP on eth0, started by init.
[ "$POLYVISOR_NETWORK" != none ] || exec sleep 2147483647
tries=0
until [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; do
	tries=$((tries + 1))
	[ "$tries" -le 200 ] || exec sleep 2147483647
	[ ! -e /sys/class/net/eth0 ] || busybox ip link set eth0 up 2>/dev/null
	sleep 0.05
done
exec busybox udhcpc -f -T 1 -i eth0 -x hostname:"$(hostname)" -s /` + ScriptPath + `
`

// Script applies udhcpc's events: the address, the default route (none on
// an isolated network, whose DHCP gives no router) and the resolver.
const Script = `#!/bin/sh
# Written by polyvisor: udhcpc's event script.
case "$1" in
deconfig)
	busybox ip addr flush dev "$interface"
	busybox ip link set "$interface" up
	;;
bound | renew)
	busybox ip addr flush dev "$interface"
	busybox ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do
		busybox ip route replace default via "$r" dev "$interface"
		break
	done
	if [ -n "$dns" ]; then
		{
			[ -z "$domain" ] || echo "search $domain"
			for d in $dns; do echo "nameserver $d"; done
		} > /etc/resolv.conf.polyvisor && mv /etc/resolv.conf.polyvisor /etc/resolv.conf
	fi
	;;
esac
exit 0
`
