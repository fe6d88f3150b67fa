package debpkg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Fetch downloads the candidate version of the package name for the Debian architecture arch
// into cacheDir, unless that very file is there already, and returns the .deb's path. apt
// finds it through polyvisor's own configuration for arch under cacheDir/apt (see
// prepareApt), never through the host's sources or dpkg's architectures.
//
// The cached file is named after the archive's pool file (name_version_arch.deb, without the
// epoch), so a new candidate version is a new file and an old one is never mistaken for it. A
// download goes to a temporary directory inside cacheDir and is renamed into place once apt
// has checked it against the archive's hashes, so an interrupted fetch leaves no partial .deb
// under the cached name.
func Fetch(ctx context.Context, cacheDir, name, arch string) (string, error) {
	if err := validName("package", name); err != nil {
		return "", err
	}
	apt, err := prepareApt(ctx, cacheDir, arch)
	if err != nil {
		return "", fmt.Errorf("fetch %s:%s: %w", name, arch, err)
	}
	fields, err := show(ctx, apt, name)
	if err != nil {
		return "", err
	}
	version, file := fields["Version"], path.Base(fields["Filename"])
	if version == "" || !strings.HasSuffix(file, ".deb") {
		return "", fmt.Errorf("fetch %s:%s: apt-cache show gives no version or pool file", name, arch)
	}
	debPath := filepath.Join(cacheDir, file)
	if _, err := os.Stat(debPath); err == nil {
		return debPath, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("fetch %s:%s: %w", name, arch, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return "", fmt.Errorf("fetch %s:%s: %w", name, arch, err)
	}
	defer os.RemoveAll(tmp)
	// apt-get download drops privileges to _apt unless told otherwise; _apt cannot write to a
	// root-only temporary directory, and apt would only warn and go on as root anyway.
	args := append(apt.options(), "-q", "-o", "APT::Sandbox::User=root", "download", name+":"+arch+"="+version)
	if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
		return "", fmt.Errorf("fetch %s:%s: %w", name, arch, err)
	}
	downloaded, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(downloaded) != 1 {
		return "", fmt.Errorf("fetch %s:%s: apt-get download left %d files, want one .deb", name, arch, len(downloaded))
	}
	if err := os.Rename(downloaded[0], debPath); err != nil {
		return "", fmt.Errorf("fetch %s:%s: %w", name, arch, err)
	}
	return debPath, nil
}

// show returns the control fields of the candidate version of name in apt's configuration.
func show(ctx context.Context, apt aptConfig, name string) (map[string]string, error) {
	arch := apt.arch
	out, err := run(ctx, "", "apt-cache", append(apt.options(), "show", "--no-all-versions", name+":"+arch)...)
	if err != nil {
		return nil, fmt.Errorf("look up %s:%s in the Debian sources: %w", name, arch, err)
	}
	fields := parseStanza(string(out))
	if fields["Package"] != name {
		return nil, fmt.Errorf("look up %s:%s: apt-cache show describes %q", name, arch, fields["Package"])
	}
	return fields, nil
}

// Extract unpacks the files of the package debPath into dir (created if missing), as
// `dpkg-deb -x` does: owners and modes as packaged, no maintainer scripts run.
func Extract(ctx context.Context, debPath, dir string) error {
	if _, err := os.Stat(debPath); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("extract %s: %w", debPath, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("extract %s: %w", debPath, err)
	}
	if _, err := run(ctx, "", "dpkg-deb", "-x", debPath, dir); err != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(debPath), err)
	}
	return nil
}
