// Package capability names Linux capabilities and parses the lists an
// administrator gives a container (security.capabilities).
package capability

import (
	"fmt"
	"slices"
	"strings"
)

// Names is indexed by capability number (linux/capability.h), up to the
// last one Debian's runc 1.1 knows.
var Names = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
}

// SysAdmin is the capability nesting adds: mounts and new namespaces.
const SysAdmin = "CAP_SYS_ADMIN"

// Default, in capability-number order, is what an unprivileged container's root gets: Docker's default
// fourteen, plus CAP_NET_ADMIN, which the guest's own DHCP client needs to
// put its address and routes on eth0 (the address is leased, not set from
// outside), and CAP_SYS_BOOT, which lets the guest power itself off at the
// end of its shutdown (reboot(2) in a child pid namespace ends that
// namespace's init and nothing else; kexec needs the capability in the
// host's namespace, and moby's seccomp profile denies it anyway), as LXC
// keeps it. No CAP_SYS_ADMIN: no mounts, no new namespaces, no unmounting
// of the masked paths. They are namespaced: they grant nothing on the host.
func Default() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
		"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_SYS_BOOT", "CAP_MKNOD",
		"CAP_AUDIT_WRITE",
		"CAP_SETFCAP",
	}
}

// Canonical returns name as the kernel's headers spell it (CAP_NET_RAW
// for net_raw or cap_net_raw), or false for a name that is not one.
func Canonical(name string) (string, bool) {
	upper := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(upper, "CAP_") {
		upper = "CAP_" + upper
	}
	return upper, slices.Contains(Names, upper)
}

// Parse reads a list like "default,CAP_SYS_PTRACE,-net_raw": "default"
// stands for Default(), a name adds a capability, a name after "-" drops
// one. The result is in capability-number order, without repeats. field
// names the value in the error, as the user wrote it.
func Parse(field, text string) ([]string, error) {
	held := map[string]bool{}
	for _, item := range strings.Split(text, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			continue
		case strings.EqualFold(item, "default"):
			for _, c := range Default() {
				held[c] = true
			}
			continue
		}
		drop := strings.HasPrefix(item, "-")
		name, ok := Canonical(strings.TrimPrefix(strings.TrimPrefix(item, "-"), "+"))
		if !ok {
			return nil, fmt.Errorf("%s: %q is not a capability: give names like CAP_SYS_PTRACE, \"default\" for the default set, -NAME to drop one", field, item)
		}
		held[name] = !drop
	}
	var caps []string
	for _, name := range Names {
		if held[name] {
			caps = append(caps, name)
		}
	}
	return caps, nil
}
