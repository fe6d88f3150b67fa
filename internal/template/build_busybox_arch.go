package template

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/polyvisor/polyvisor/internal/debpkg"
	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// BuildBusyboxArch fills the empty directory rootfs with a busybox system for the Debian
// architecture arch: the busybox binary of Debian's busybox-static:ARCH, fetched through
// cacheDir (see debpkg.Fetch), laid out as BuildBusybox lays out the host's. For the host's
// architecture it is BuildBusybox.
//
// A foreign binary cannot run here to list its applets, so the list comes from the host's
// busybox-static when it is the same busybox version (Debian builds busybox-static with one
// configuration for every architecture). A foreign busybox of another version (riscv64's,
// from a later Debian release) gets the applets its own name table lists, placed where the
// host's busybox puts them.
func BuildBusyboxArch(ctx context.Context, rootfs, arch, cacheDir string, progress Progress) error {
	if arch == HostArch() {
		return BuildBusybox(ctx, rootfs, progress)
	}
	progress = reportTo(progress)
	if err := requireEmptyDir(rootfs); err != nil {
		return fmt.Errorf("build busybox rootfs for %s: %w", arch, err)
	}
	if err := requireStaticBinary(hostBusybox); err != nil {
		return err
	}
	progress("fetching busybox-static:"+arch, 0, 0)
	deb, err := debpkg.Fetch(ctx, cacheDir, "busybox-static", arch)
	if err != nil {
		return fmt.Errorf("build busybox rootfs for %s: %w", arch, err)
	}
	unpacked, err := os.MkdirTemp("", "polyvisor-busybox-"+arch+"-")
	if err != nil {
		return fmt.Errorf("build busybox rootfs for %s: %w", arch, err)
	}
	defer os.RemoveAll(unpacked)
	if err := debpkg.Extract(ctx, deb, unpacked); err != nil {
		return fmt.Errorf("build busybox rootfs for %s: %w", arch, err)
	}
	busybox := filepath.Join(unpacked, "bin/busybox")
	if _, err := os.Stat(busybox); err != nil {
		busybox = filepath.Join(unpacked, "usr/bin/busybox") // merged /usr, from trixie on
	}
	if err := requireMachine(busybox, arch); err != nil {
		return err
	}
	applets, err := busyboxApplets(ctx, hostBusybox)
	if err != nil {
		return err
	}
	if sameErr := requireSameBusybox(hostBusybox, busybox); sameErr != nil {
		if applets, err = foreignApplets(busybox, applets); err != nil {
			return fmt.Errorf("build busybox rootfs for %s: %w; %w", arch, sameErr, err)
		}
	}
	return fillBusyboxTree(ctx, rootfs, busybox, applets, progress)
}

// appletTable finds busybox's applet_names table: the sorted, NUL-separated applet names,
// which begin with test's "[" and "[[".
const appletTable = "[\x00[[\x00"

// foreignApplets returns the applet paths of the busybox binary path, read from its name
// table: those hostApplets (paths, as --list-full gives them) has in the host's directories,
// the others in usr/bin.
func foreignApplets(path string, hostApplets []string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read busybox applets: %w", err)
	}
	names, err := appletNames(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dirOf := map[string]string{}
	for _, applet := range hostApplets {
		dirOf[filepath.Base(applet)] = filepath.Dir(applet)
	}
	var applets []string
	for _, name := range names {
		if name == "busybox" { // the binary itself, as the string after the table
			continue
		}
		dir, ok := dirOf[name]
		if !ok {
			dir = "usr/bin"
		}
		applets = append(applets, filepath.Join(dir, name))
	}
	return applets, nil
}

// appletNames reads the applet names of a busybox binary from its applet_names table.
func appletNames(busybox []byte) ([]string, error) {
	start := bytes.Index(busybox, []byte(appletTable))
	if start < 0 {
		return nil, errors.New("no applet name table (it starts with test's [ and [[)")
	}
	var names []string
	for _, name := range bytes.Split(busybox[start:], []byte{0}) {
		if !appletName().Match(name) {
			break
		}
		names = append(names, string(name))
	}
	for _, must := range []string{"sh", "init", "mount", "poweroff"} {
		if !slices.Contains(names, must) {
			return nil, fmt.Errorf("applet name table (%d names) lacks %s", len(names), must)
		}
	}
	return names, nil
}

// appletName matches one applet's name.
var appletName = lazyre.New(`^[a-z0-9_.\[\]-]+$`)

// requireMachine fails unless the ELF executable path is built for the Debian architecture arch.
func requireMachine(path, arch string) error {
	want, err := debpkg.ELFMachine(arch)
	if err != nil {
		return err
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%s is built for %v, not %s", path, f.Machine, arch)
	}
	return nil
}

// busyboxBanner finds busybox's version banner in a busybox binary:
// "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)".
var busyboxBanner = lazyre.New(`BusyBox v[0-9][^\x00 ]* \([^)\x00]*\)`)

// binNMU matches the binNMU suffix at the end of a banner (+b1): a rebuild of the same source
// for some architectures only, which does not change what busybox contains.
var binNMU = lazyre.New(`\+b[0-9]+\)$`)

// requireSameBusybox fails unless the busybox binaries host and foreign carry the same
// version banner, binNMU suffixes aside.
func requireSameBusybox(host, foreign string) error {
	hostVersion, err := busyboxVersion(host)
	if err != nil {
		return err
	}
	foreignVersion, err := busyboxVersion(foreign)
	if err != nil {
		return err
	}
	if hostVersion != foreignVersion {
		return fmt.Errorf("the host's busybox (%s) is not the version of busybox-static for the guest (%s), so its applet list may not fit: upgrade busybox-static on the host",
			hostVersion, foreignVersion)
	}
	return nil
}

// busyboxVersion returns the version banner of the busybox binary path without its binNMU suffix.
func busyboxVersion(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read busybox version: %w", err)
	}
	banner := busyboxBanner().Find(data)
	if banner == nil {
		return "", fmt.Errorf("no busybox version banner in %s", path)
	}
	return string(binNMU().ReplaceAll(banner, []byte(")"))), nil
}
