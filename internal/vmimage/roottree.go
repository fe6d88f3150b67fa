package vmimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/polyvisor/polyvisor/internal/guestnet"
)

// Paths inside the guest's root tree.
const (
	agentPath   = "usr/sbin/polyvisor-agent"
	sysinitPath = "usr/lib/polyvisor/sysinit"
	// powerKeyHandler is what busybox acpid runs on a KEY_POWER input event: its built-in
	// tables name the event PWRF/00000080 and look for it under /etc/acpi.
	powerKeyHandler = "etc/acpi/PWRF/00000080"
)

// GuestAgent is where a template's guest has the agent, for the host to run it through exec.
const GuestAgent = "/" + agentPath

// prepareRootTree makes the root tree bootable as a VM by busybox init: the agent, the
// sysinit script, /etc/inittab, and poweroff/reboot/halt where the tree lacks them. agent is
// the host path of the guest agent binary, or "" for none.
func prepareRootTree(rootfs string, spec archSpec, agent string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return fmt.Errorf("prepare root tree: %w", err)
	}
	defer root.Close()
	if _, err := root.Stat("bin/busybox"); err != nil {
		return fmt.Errorf("prepare root tree: /bin/busybox, the VM's init, is missing: %w", err)
	}
	if agent != "" {
		if err := requireStaticFor(agent, spec.debian); err != nil {
			return fmt.Errorf("guest agent: %w", err)
		}
		if err := copyInto(root, agent, agentPath, 0o755); err != nil {
			return fmt.Errorf("install guest agent: %w", err)
		}
	}
	if err := root.MkdirAll("usr/lib/polyvisor", 0o755); err != nil {
		return fmt.Errorf("prepare root tree: %w", err)
	}
	if err := root.WriteFile(sysinitPath, []byte(sysinitScript), 0o755); err != nil {
		return fmt.Errorf("write sysinit: %w", err)
	}
	for path, content := range map[string]string{guestnet.LauncherPath: guestnet.Launcher, guestnet.ScriptPath: guestnet.Script} {
		if err := root.WriteFile(path, []byte(content), 0o755); err != nil {
			return fmt.Errorf("write /%s: %w", path, err)
		}
	}
	powerButton := len(spec.powerButton) > 0
	if powerButton {
		if err := writePowerKeyHandler(root); err != nil {
			return err
		}
	}
	shell := "/bin/sh"
	if _, err := root.Stat("bin/bash"); err == nil {
		shell = "/bin/bash" // a Debian tree: the shell its users expect
	}
	if err := root.WriteFile("etc/inittab", []byte(vmInittab(spec.console, shell, agent != "", powerButton)), 0o644); err != nil {
		return fmt.Errorf("write /etc/inittab: %w", err)
	}
	// Debian's minbase has no init system, so nothing provides poweroff, reboot and halt;
	// busybox's applets of those names signal busybox init, which is pid 1 here.
	for _, applet := range []string{"sbin/poweroff", "sbin/reboot", "sbin/halt"} {
		if _, err := root.Lstat(applet); errors.Is(err, fs.ErrNotExist) {
			if err := root.Symlink("/bin/busybox", applet); err != nil {
				return fmt.Errorf("link /%s to busybox: %w", applet, err)
			}
		}
	}
	return nil
}

// writePowerKeyHandler makes the power key (QMP system_powerdown) power the guest off, and
// makes sure acpid has its log directory.
func writePowerKeyHandler(root *os.Root) error {
	for _, dir := range []string{"etc/acpi/PWRF", "var/log"} {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("install power key handler: %w", err)
		}
	}
	if err := root.WriteFile(powerKeyHandler, []byte("#!/bin/sh\n# Written by polyvisor: the power key powers the VM off.\nexec poweroff\n"), 0o755); err != nil {
		return fmt.Errorf("install power key handler: %w", err)
	}
	return nil
}

// copyInto copies the host file src to dst inside root with mode, replacing dst.
func copyInto(root *os.Root, src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
