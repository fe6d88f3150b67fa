package debpkg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// lockWait bounds how long EnsureArch waits for another apt or dpkg run to let go of its lock.
const lockWait = 2 * time.Minute

// EnsureArch makes the host's apt able to download packages of the Debian architecture arch:
// when dpkg does not list arch yet, it checks that an apt source offers it, then runs
// `dpkg --add-architecture` and `apt-get update`. It does nothing when arch is the host's or
// already configured with its package lists present, so it is cheap to call before each fetch.
// An architecture no source offers fails with ErrArchUnavailable, leaving dpkg untouched.
func EnsureArch(ctx context.Context, arch string) error {
	if err := validName("architecture", arch); err != nil {
		return err
	}
	configured, err := configuredArchs(ctx)
	if err != nil {
		return err
	}
	lists, err := listsDir(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(configured, arch) && hasPackageLists(lists, arch) {
		return nil
	}
	offered, err := offeredArchs(lists)
	if err != nil {
		return err
	}
	if len(offered) == 0 { // never updated: fetch the lists once to learn what is offered
		updateErr := aptUpdate(ctx)
		if offered, err = offeredArchs(lists); err != nil {
			return err
		}
		if len(offered) == 0 && updateErr != nil {
			return updateErr
		}
	}
	if !slices.Contains(offered, arch) {
		return fmt.Errorf("debian architecture %s: %w (they offer %s)", arch, ErrArchUnavailable, strings.Join(offered, " "))
	}
	if !slices.Contains(configured, arch) {
		if _, err := runWaitingForLock(ctx, "dpkg", "--add-architecture", arch); err != nil {
			return fmt.Errorf("add architecture %s: %w", arch, err)
		}
	}
	// apt-get update fails when any one source cannot be reached (a third-party repository on
	// a host without internet) even though it fetched the others: what matters is whether
	// lists for arch came.
	updateErr := aptUpdate(ctx)
	if !hasPackageLists(lists, arch) {
		if updateErr != nil {
			return updateErr
		}
		return fmt.Errorf("debian architecture %s: apt-get update fetched no package lists for it: %w", arch, ErrArchUnavailable)
	}
	return nil
}

// configuredArchs returns dpkg's native architecture followed by its foreign ones.
func configuredArchs(ctx context.Context) ([]string, error) {
	native, err := run(ctx, "", "dpkg", "--print-architecture")
	if err != nil {
		return nil, err
	}
	foreign, err := run(ctx, "", "dpkg", "--print-foreign-architectures")
	if err != nil {
		return nil, err
	}
	return append(strings.Fields(string(native)), strings.Fields(string(foreign))...), nil
}

// listsDir asks apt where it keeps the package lists (normally /var/lib/apt/lists).
func listsDir(ctx context.Context) (string, error) {
	out, err := run(ctx, "", "apt-config", "shell", "LISTS", "Dir::State::lists/d")
	if err != nil {
		return "", err
	}
	dir := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "LISTS="))
	dir = strings.Trim(dir, "'")
	if dir == "" {
		return "", fmt.Errorf("apt-config does not name the package lists directory")
	}
	return dir, nil
}

// offeredArchs returns the architectures the Release files in lists announce, sorted.
func offeredArchs(lists string) ([]string, error) {
	entries, err := os.ReadDir(lists)
	if err != nil {
		return nil, fmt.Errorf("read apt lists: %w", err)
	}
	var archs []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, "_InRelease") && !strings.HasSuffix(name, "_Release") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(lists, name))
		if err != nil {
			return nil, fmt.Errorf("read apt lists: %w", err)
		}
		for _, arch := range strings.Fields(parseStanza(string(data))["Architectures"]) {
			if arch != "all" && !slices.Contains(archs, arch) {
				archs = append(archs, arch)
			}
		}
	}
	slices.Sort(archs)
	return archs, nil
}

// hasPackageLists reports whether apt holds a Packages list for arch (compressed or not).
func hasPackageLists(lists, arch string) bool {
	matches, _ := filepath.Glob(filepath.Join(lists, "*_binary-"+arch+"_Packages*"))
	return len(matches) > 0
}

// aptUpdate refreshes the host's package lists.
func aptUpdate(ctx context.Context) error {
	if _, err := runWaitingForLock(ctx, "apt-get", "-q", "update"); err != nil {
		return fmt.Errorf("update package lists: %w", err)
	}
	return nil
}

// runWaitingForLock runs a command that takes apt's or dpkg's lock, trying again while
// another apt or dpkg holds it (apt-get update does not wait for the lists lock by itself).
func runWaitingForLock(ctx context.Context, name string, args ...string) ([]byte, error) {
	deadline := time.Now().Add(lockWait)
	for {
		out, err := run(ctx, "", name, args...)
		if err == nil || !isLockBusy(err) || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", name, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// isLockBusy reports whether err says another process holds an apt or dpkg lock.
func isLockBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Could not get lock") || strings.Contains(msg, "Unable to lock") ||
		strings.Contains(msg, "is locked by another process")
}
