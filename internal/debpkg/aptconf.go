package debpkg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// listsMaxAge is how long a package list fetched for an architecture serves before Fetch
// refreshes it (a kernel's security update replaces the pool file the old list names).
const listsMaxAge = 24 * time.Hour

// lockWait bounds how long an apt run waits for another one to let go of its lock.
const lockWait = 2 * time.Minute

// debianReleases are Debian's releases in order: a host's own release comes first, and an
// architecture it does not ship (riscv64 before trixie) is looked for in the releases after it.
var debianReleases = []string{"buster", "bullseye", "bookworm", "trixie", "forky"}

// hostKeyring is the host's Debian archive keyring, named as Signed-By in polyvisor's sources.
const hostKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// aptConfig is polyvisor's own apt configuration for one Debian architecture, under
// cacheDir/apt/ARCH: its sources list, package lists, apt cache and an empty dpkg status. apt
// runs with it to look up and download that architecture's packages; the host's sources, its
// lists and dpkg's architectures are never touched.
type aptConfig struct {
	dir  string
	arch string
}

func newAptConfig(cacheDir, arch string) aptConfig {
	return aptConfig{dir: filepath.Join(cacheDir, "apt", arch), arch: arch}
}

// options are the apt-get and apt-cache options that make them use this configuration.
// Dir::Cache keeps apt's binary caches out of the host's /var/cache/apt; the empty status
// file keeps the host's installed packages out of apt's view; DEP-11 (AppStream) metadata is
// of no use here and three times the size of the package list.
func (c aptConfig) options() []string {
	return []string{
		"-o", "Dir::Etc::sourcelist=" + c.sourcesList(),
		"-o", "Dir::Etc::sourceparts=" + filepath.Join(c.dir, "sources.list.d"),
		"-o", "Dir::State::lists=" + c.lists(),
		"-o", "Dir::State::status=" + filepath.Join(c.dir, "status"),
		"-o", "Dir::Cache=" + filepath.Join(c.dir, "cache"),
		"-o", "APT::Architecture=" + c.arch,
		"-o", "APT::Architectures=" + c.arch,
		"-o", "Acquire::Languages=none",
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
	}
}

func (c aptConfig) sourcesList() string { return filepath.Join(c.dir, "sources.list") }
func (c aptConfig) lists() string       { return filepath.Join(c.dir, "lists") }
func (c aptConfig) stamp() string       { return filepath.Join(c.dir, "updated") }

// fresh reports whether the lists were fetched for this architecture less than listsMaxAge ago.
func (c aptConfig) fresh() bool {
	info, err := os.Stat(c.stamp())
	return err == nil && time.Since(info.ModTime()) < listsMaxAge && hasPackageLists(c.lists(), c.arch)
}

// prepareApt returns the apt configuration for arch under cacheDir with its package lists
// fetched. The sources are the host's Debian sources for its own release (from the host's apt
// configuration: its mirror, its -updates and -security), and when that release does not
// ship arch, the same sources for the next release that does. An architecture no release
// offers fails with ErrArchUnavailable.
func prepareApt(ctx context.Context, cacheDir, arch string) (aptConfig, error) {
	if err := validName("architecture", arch); err != nil {
		return aptConfig{}, err
	}
	c := newAptConfig(cacheDir, arch)
	if c.fresh() {
		return c, nil
	}
	codename, err := hostCodename("/")
	if err != nil {
		return aptConfig{}, err
	}
	targets, err := hostIndexTargets(ctx, nil)
	if err != nil {
		return aptConfig{}, err
	}
	keyring := ""
	if _, err := os.Stat(hostKeyring); err == nil {
		keyring = hostKeyring
	}
	for _, dir := range []string{"sources.list.d", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(c.dir, dir), 0o755); err != nil {
			return aptConfig{}, fmt.Errorf("apt configuration for %s: %w", arch, err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, "status"), nil, 0o644); err != nil {
		return aptConfig{}, fmt.Errorf("apt configuration for %s: %w", arch, err)
	}
	var tried []string
	var updateErr error
	for _, suite := range laterReleases(codename) {
		sources, err := sourcesFor(targets, codename, suite, keyring)
		if err != nil {
			return aptConfig{}, err
		}
		if err := writeFileAtomic(c.sourcesList(), []byte(sources)); err != nil {
			return aptConfig{}, fmt.Errorf("apt configuration for %s: %w", arch, err)
		}
		tried = append(tried, suite)
		// apt-get update fails when any one source cannot be reached even though it fetched
		// the others: what matters is whether lists for arch came.
		_, updateErr = runWaitingForLock(ctx, "apt-get", append(c.options(), "-q", "update")...)
		if hasPackageLists(c.lists(), arch) {
			if err := os.WriteFile(c.stamp(), []byte(suite+"\n"), 0o644); err != nil {
				return aptConfig{}, fmt.Errorf("apt configuration for %s: %w", arch, err)
			}
			return c, nil
		}
		if ctx.Err() != nil {
			return aptConfig{}, fmt.Errorf("update package lists for %s: %w", arch, ctx.Err())
		}
	}
	os.RemoveAll(c.dir) // nothing of an architecture Debian does not ship stays behind
	err = fmt.Errorf("debian architecture %s: %w (tried %s on the host's mirror)", arch, ErrArchUnavailable, strings.Join(tried, ", "))
	if updateErr != nil {
		err = fmt.Errorf("%w; last apt-get update: %w", err, updateErr)
	}
	return aptConfig{}, err
}

// laterReleases returns codename and the Debian releases after it.
func laterReleases(codename string) []string {
	if i := slices.Index(debianReleases, codename); i >= 0 {
		return slices.Clone(debianReleases[i:])
	}
	return []string{codename}
}

// hostCodename returns VERSION_CODENAME from root's etc/os-release (bookworm).
func hostCodename(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "etc/os-release"))
	if err != nil {
		return "", fmt.Errorf("host release: %w", err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if value, ok := strings.CutPrefix(scanner.Text(), "VERSION_CODENAME="); ok {
			if value = strings.Trim(value, `"'`); value != "" {
				return value, nil
			}
		}
	}
	return "", errors.New("host release: /etc/os-release names no VERSION_CODENAME: foreign architectures' packages come from the host's Debian release and its mirror")
}

// indexTarget is one package list the host's apt sources name.
type indexTarget struct {
	uri, release, component string
}

// hostIndexTargets asks apt which package lists the host's sources name, as apt itself reads
// them (one-line and deb822 files alike). extra are apt options; tests point
// Dir::Etc::sourcelist and sourceparts at a fixture with them.
func hostIndexTargets(ctx context.Context, extra []string) ([]indexTarget, error) {
	args := append(slices.Clone(extra), "indextargets", "--no-release-info",
		"--format", "$(REPO_URI) $(RELEASE) $(COMPONENT)", "Created-By: Packages")
	out, err := run(ctx, "", "apt-get", args...)
	if err != nil {
		return nil, fmt.Errorf("read the host's apt sources: %w", err)
	}
	var targets []indexTarget
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		t := indexTarget{uri: strings.TrimSuffix(f[0], "/"), release: f[1], component: f[2]}
		if !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	return targets, nil
}

// sourcesFor writes the sources.list of polyvisor's apt configuration: the host's "main"
// sources of its release codename (the release, its -updates and -security), each moved to
// suite. keyring, when set, is their Signed-By.
func sourcesFor(targets []indexTarget, codename, suite, keyring string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by polyvisor: the host's Debian sources of %s, for %s.\n", codename, suite)
	options := ""
	if keyring != "" {
		options = "[signed-by=" + keyring + "] "
	}
	found := false
	for _, t := range targets {
		if t.component != "main" {
			continue
		}
		for _, part := range []string{"", "-updates", "-security"} {
			if t.release == codename+part {
				fmt.Fprintf(&b, "deb %s%s %s%s main\n", options, t.uri, suite, part)
				found = found || part == ""
			}
		}
	}
	if !found {
		return "", fmt.Errorf("the host's apt sources have no %s entry with the main component to take the Debian mirror from: add one", codename)
	}
	return b.String(), nil
}

// hasPackageLists reports whether lists holds a Packages list for arch (compressed or not).
func hasPackageLists(lists, arch string) bool {
	matches, _ := filepath.Glob(filepath.Join(lists, "*_binary-"+arch+"_Packages*"))
	return len(matches) > 0
}

// writeFileAtomic writes data to path through a temporary file of its own and a rename, so
// that two builds preparing one architecture at once never read half a file.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// runWaitingForLock runs a command that takes apt's lock, trying again while another apt
// holds it (apt-get update does not wait for the lists lock by itself).
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
