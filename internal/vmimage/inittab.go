package vmimage

import "github.com/polyvisor/polyvisor/internal/guestnet"

// vmInittab returns /etc/inittab for busybox init as pid 1 of a VM whose serial console is
// the device console (ttyS0, ttyAMA0).
//
// The shell runs on the console by its device name rather than on "console" (the container
// inittab's choice): busybox init opens /dev/ttyS0 after setsid, so it becomes the shell's
// controlling tty and job control and Ctrl-C work; /dev/console would give no controlling
// tty. The agent's output goes to /dev/console, the same serial line.
//
// Stopping: `poweroff` (busybox's applet) sends SIGUSR2 to init, which runs the shutdown
// actions, kills every process and calls reboot(RB_POWER_OFF): the machine powers off and
// QEMU exits (ACPI S5 on x86 microvm, PSCI on arm64 virt). With powerButton, busybox acpid
// turns the power key that QMP system_powerdown presses into that same poweroff; without it
// nothing in a busybox system would listen to the key.
func vmInittab(console, shell string, agent, powerButton bool) string {
	tab := "# Written by polyvisor for busybox init in a VM.\n" +
		"::sysinit:/" + sysinitPath + "\n"
	if agent {
		tab += "::respawn:" + agentCommand + "\n"
	}
	tab += guestnet.InittabLine
	if powerButton {
		tab += "::respawn:/bin/busybox acpid -f -c /etc/acpi -p /run/acpid.pid\n"
	}
	// s390x has no power key: QMP system_powerdown there sends a quiesce signal, which its
	// kernel turns into a reboot that powers off, by way of ctrl-alt-del, which busybox init
	// receives as SIGINT and answers only with its ctrlaltdel actions.
	return tab + console + "::respawn:-" + shell + "\n" +
		"::ctrlaltdel:/sbin/reboot\n" +
		"::shutdown:/bin/sync\n" +
		"::shutdown:/bin/umount -a -r\n"
}

// agentCommand starts the agent on its virtio-serial port (QEMU) or, on a PC whose second
// serial port is a UART and that has no virtio port (Bochs, which has no virtio device), on
// /dev/ttyS1 at 115200 baud. The 8250 driver makes a ttyS device of every legacy port; the
// type it detected tells a UART (16550A: 4) from none (0). busybox init runs a command with
// quotes as sh -c "exec COMMAND", hence the sh.
const agentCommand = `/bin/sh -c 'if grep -qsv "^0$" /sys/class/tty/ttyS1/type && ! ls /sys/class/virtio-ports/*/name >/dev/null 2>&1; then stty -F /dev/ttyS1 115200; exec /` + agentPath + ` --port /dev/ttyS1; fi; exec /` + agentPath + `'`

// sysinitScript brings up a VM's file systems and names it; busybox init runs it first and
// waits for it. The initramfs has mounted /proc, /sys and /dev already; they are mounted here
// only when the kernel booted the disk without it. It uses commands that both a busybox tree
// and Debian's minbase have.
const sysinitScript = `#!/bin/sh
# Written by polyvisor: busybox init's sysinit in a VM.
# mounted DIR: is a file system mounted on DIR? (busybox-static has no mountpoint applet)
mounted() { grep -qs "^[^ ]* $1 " /proc/mounts; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mounted /dev/shm || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -o remount,rw / || echo "polyvisor-sysinit: cannot remount / read-write"
# The host may have grown the disk since the last boot (config set NAME disk.root.size=).
[ ! -x /` + agentPath + ` ] || /` + agentPath + ` grow-root
mounted /run || mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
name=
for word in $(cat /proc/cmdline); do
	case "$word" in ` + HostnameParam + `=*) name="${word#` + HostnameParam + `=}" ;; esac
done
fwcfg=/sys/firmware/qemu_fw_cfg/by_name/` + HostnameFwCfg + `/raw
[ -n "$name" ] || [ ! -r "$fwcfg" ] || read -r name < "$fwcfg"
[ -n "$name" ] || [ ! -r /etc/hostname ] || read -r name < /etc/hostname
[ -z "$name" ] || hostname "$name"
echo ` + BootedMarker + `
`
