package template

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// aptSource is one "deb" entry of an apt sources file.
type aptSource struct {
	uris       []string
	suites     []string
	components []string
	signedBy   string
}

// isDebianSuite reports whether suite is a name Debian's archive gives a release: a codename
// or an alias such as "stable". "-security", "-updates" and "-backports" suites do not match, nor do third-party names such
// as "cloud-sdk-bookworm" or "nodistro".
func isDebianSuite(suite string) bool {
	switch suite {
	case "buzz", "rex", "bo", "hamm", "slink", "potato", "woody", "sarge", "etch", "lenny",
		"squeeze", "wheezy", "jessie", "stretch", "buster", "bullseye", "bookworm", "trixie",
		"forky", "duke", "sid", "oldoldstable", "oldstable", "stable", "testing", "unstable":
		return true
	}
	return false
}

// MirrorFromHost returns the Debian mirror URL from the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and deb822 *.sources), picking an entry whose Suites include a Debian suite name (bookworm, trixie, ...) and not -security/-updates, and whose URI is not a third-party repo (it must serve the "main" component and a Debian suite).
//
// root is "/" normally; tests pass a directory holding etc/apt. Files are read in apt's
// order: sources.list, then sources.list.d in name order; files with other extensions
// (such as ".disabled") are ignored, as apt ignores them. Among the entries that qualify,
// one that looks like Debian's own archive (a URI path ending in /debian, or signed by
// debian-archive-keyring) wins over one that does not; then the first one read wins.
func MirrorFromHost(root string) (string, error) {
	files, err := aptSourceFiles(root)
	if err != nil {
		return "", err
	}
	best, bestScore := "", 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read apt sources: %w", err)
		}
		var sources []aptSource
		if strings.HasSuffix(file, ".sources") {
			sources = parseDeb822Sources(string(data))
		} else {
			sources = parseOneLineSources(string(data))
		}
		for _, src := range sources {
			for _, uri := range src.uris {
				if score := mirrorScore(src, uri); score > bestScore {
					best, bestScore = strings.TrimSuffix(uri, "/"), score
				}
			}
		}
	}
	if best == "" {
		return "", fmt.Errorf("no Debian mirror in the host's apt sources (%s): add an entry for a Debian suite with the main component",
			strings.Join(files, ", "))
	}
	return best, nil
}

// aptSourceFiles lists the sources files under root in the order apt reads them.
func aptSourceFiles(root string) ([]string, error) {
	var files []string
	list := filepath.Join(root, "etc/apt/sources.list")
	if _, err := os.Stat(list); err == nil {
		files = append(files, list)
	}
	dir := filepath.Join(root, "etc/apt/sources.list.d")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read apt sources: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".list") || strings.HasSuffix(e.Name(), ".sources")) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, name := range names {
		files = append(files, filepath.Join(dir, name))
	}
	return files, nil
}

// mirrorScore rates uri of src as a Debian mirror for debootstrap: 0 when it cannot be one,
// 2 when it also looks like Debian's own archive, 1 otherwise.
func mirrorScore(src aptSource, uri string) int {
	if !slices.Contains(src.components, "main") || !slices.ContainsFunc(src.suites, isDebianSuite) {
		return 0
	}
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" && u.Scheme != "file" {
		return 0
	}
	switch u.Scheme {
	case "http", "https", "ftp", "file": // what debootstrap can fetch from
	default:
		return 0
	}
	if strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/debian") || strings.Contains(src.signedBy, "debian-archive-keyring") {
		return 2
	}
	return 1
}
