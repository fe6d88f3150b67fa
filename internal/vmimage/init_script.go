package vmimage

import "strings"

// Markers a VM prints on its serial console, for whoever watches it boot.
const (
	// CanaryFlag on the kernel command line makes the initramfs print CanaryMarker and power
	// the machine off at once: the KVM canary boots the kernel and initrd alone with it.
	CanaryFlag = "polyvisor.canary"
	// CanaryMarker is the line the initramfs prints when booted with CanaryFlag.
	CanaryMarker = "POLYVISOR-CANARY-OK"
	// BootedMarker is the line the root disk's sysinit prints once the guest's file systems
	// are up, just before busybox init starts the agent and the console shell.
	BootedMarker = "POLYVISOR-BOOTED"
	// HostnameParam=NAME on the kernel command line names the guest, overriding /etc/hostname
	// (every clone of a template shares its disk, so the name comes from outside).
	HostnameParam = "polyvisor.hostname"
	// HostnameFwCfg is the fw_cfg file naming a guest whose disk's bootloader holds its
	// kernel command line (firmware boot); the guest reads it in /sys/firmware/qemu_fw_cfg.
	HostnameFwCfg = "opt/org.polyvisor/hostname"
)

// initScript returns the initramfs's /init for loading modules (names, in load order; each
// is /lib/modules/NAME.ko), mounting the root disk and handing over to its init.
//
// Busybox's insmod loads one file and knows nothing of dependencies, hence the order fixed at
// build time. Kernel command line options: root= (a /dev path; required; /dev/vdXN may turn
// up as /dev/sdXN, the same disk on IDE), rootfstype= (default ext4), ro or rw (default ro:
// the disk's sysinit remounts it rw), init= (default /sbin/init), and MODULE.PARAM=VALUE for
// the modules loaded here, which only modprobe would otherwise pass on. /proc, /sys and /dev are moved onto the new root, so its init finds them
// mounted.
func initScript(modules []string) string {
	return strings.ReplaceAll(initScriptTemplate, "@MODULES@", strings.Join(modules, " "))
}

const initScriptTemplate = `#!/bin/busybox sh
# /init of a polyvisor VM's initramfs, written by polyvisor. Debian's kernel has virtio and
# ext4 as modules: load them, mount the root disk, hand over to its init.
/bin/busybox --install -s /bin
export PATH=/bin

# rescue says on the console why booting stopped and keeps a shell there.
rescue() {
	echo "polyvisor-initrd: $*: starting a rescue shell"
	while :; do setsid cttyhack sh; sleep 1; done
}

mount -t proc proc /proc || rescue "cannot mount /proc"
mount -t sysfs sysfs /sys || rescue "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || rescue "cannot mount devtmpfs on /dev"
read -r cmdline < /proc/cmdline

# The KVM canary boots the kernel and this initramfs alone: getting here is the proof.
case " $cmdline " in
*" ` + CanaryFlag + ` "*)
	echo ` + CanaryMarker + `
	poweroff -f # a machine that cannot power off (no ACPI) returns here: -no-reboot ends a reboot
	reboot -f
	rescue "cannot power off or reboot"
	;;
esac

# modprobe hands a module the command line's MODULE.PARAM=VALUE options; insmod does not.
params() {
	for word in $cmdline; do
		case "$word" in "$1".*) echo "${word#"$1".}" ;; esac
	done
}
for module in @MODULES@; do
	insmod "/lib/modules/$module.ko" $(params "$module") || rescue "cannot load kernel module $module"
done

root= fstype=ext4 mode=ro init=/sbin/init
for word in $cmdline; do
	case "$word" in
	root=*) root="${word#root=}" ;;
	rootfstype=*) fstype="${word#rootfstype=}" ;;
	init=*) init="${word#init=}" ;;
	ro | rw) mode="$word" ;;
	esac
done
[ -n "$root" ] || rescue "no root= on the kernel command line"
# A firmware-booted disk is /dev/vdX on virtio (QEMU) and /dev/sdX on an emulated IDE
# controller (Bochs): the same disk, named by its bus. Whichever appears is the root.
alt=
case "$root" in /dev/vd*) alt="/dev/sd${root#/dev/vd}" ;; esac
tries=0
while [ ! -b "$root" ]; do
	if [ -n "$alt" ] && [ -b "$alt" ]; then
		root=$alt
		break
	fi
	tries=$((tries + 1))
	[ "$tries" -le 100 ] || rescue "root disk $root did not appear within 10 s"
	sleep 0.1
done
mount -t "$fstype" -o "$mode" "$root" /newroot || rescue "cannot mount $root ($fstype, $mode)"
[ -e "/newroot$init" ] || [ -L "/newroot$init" ] || rescue "no $init on $root"
for dir in /dev /proc /sys; do
	mount --move "$dir" "/newroot$dir" || rescue "cannot move $dir onto $root"
done
exec switch_root /newroot "$init"
`
