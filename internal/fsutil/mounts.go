package fsutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MountPoints returns the mount points of this process's mount namespace,
// as /proc/self/mountinfo lists them.
func MountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// Fields: mount ID, parent ID, major:minor, root, mount point, ...
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			points = append(points, unescapeMount(fields[4]))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return points, nil
}

// MountsUnder returns the mount points at dir or below it.
func MountsUnder(dir string) ([]string, error) {
	points, err := MountPoints()
	if err != nil {
		return nil, err
	}
	var under []string
	for _, p := range points {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			under = append(under, p)
		}
	}
	return under, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space) in
// mountinfo's paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// IsMountPoint reports whether something is mounted on path in this
// process's mount namespace.
func IsMountPoint(path string) (bool, error) {
	points, err := MountPoints()
	if err != nil {
		return false, err
	}
	return slices.Contains(points, filepath.Clean(path)), nil
}

// Unmount detaches target if something is mounted there. Lazy detach, since
// a shell of the admin's may still sit inside it; the tree goes away when
// the last user leaves (and a loop device set to clear itself with it).
func Unmount(target string) error {
	mounted, err := IsMountPoint(target)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// UnmountUnder detaches every mount at or below dir, the deepest first (a
// staging copy's quota image under its overlay, say), so that dir can be
// removed without reaching into a mounted file system.
func UnmountUnder(dir string) error {
	points, err := MountsUnder(filepath.Clean(dir))
	if err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
