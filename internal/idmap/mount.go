package idmap

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// MountMapped mounts the directory src at target read-only, nosuid and
// nodev, with every owner in from's range shown as the same id in to's
// range (an idmapped mount, Linux 5.12+): a template stored in the shared
// range reads, through it, as if it had been shifted to a guest's own
// range, without a copy or a chown. Owners outside from show as the
// overflow id (nobody). target must exist.
func MountMapped(ctx context.Context, src, target string, from, to Map) error {
	userns, err := mappingUserns(ctx, from, to)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	defer userns.Close()
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: open_tree: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{
		Attr_set:  unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
		Userns_fd: uint64(userns.Fd()),
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmapped mount of %s: mount_setattr: %w (the file system must allow idmapped mounts: ext4, xfs, btrfs, tmpfs do)", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("idmapped mount of %s at %s: move_mount: %w", src, target, err)
	}
	return nil
}

// mappingUserns returns a user namespace whose map takes from's range to
// to's: the mapping an idmapped mount applies to on-disk owners. A user
// namespace is made by a process, so a short-lived child is cloned into a
// new one (Go writes its uid_map and gid_map before it runs), its
// namespace is held by an open file and the child is ended; the namespace
// lives on as long as the file, or a mount made with it.
func mappingUserns(ctx context.Context, from, to Map) (*os.File, error) {
	sleep, err := hostreq.Lookup("sleep")
	if err != nil {
		return nil, err
	}
	ids := []syscall.SysProcIDMap{{ContainerID: int(from.HostBase), HostID: int(to.HostBase), Size: int(min(from.Size, to.Size))}}
	cmd := exec.CommandContext(ctx, sleep, "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: ids,
		GidMappings: ids,
		// Should the daemon die right now, the child goes too.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("make a user namespace: %w", err)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/user")
	cmd.Process.Kill()
	cmd.Wait() // killed: its exit status says nothing
	if err != nil {
		return nil, fmt.Errorf("make a user namespace: %w", err)
	}
	return ns, nil
}
