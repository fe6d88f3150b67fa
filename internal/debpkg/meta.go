package debpkg

import (
	"context"
	"fmt"
	"strings"
)

// ResolveMeta returns the package that the versioned metapackage name (such as
// linux-image-amd64) pulls in for arch in polyvisor's apt configuration under cacheDir (see
// Fetch): the dependency of its candidate version named like the metapackage with a version
// in the middle (linux-image-6.1.0-56-amd64).
func ResolveMeta(ctx context.Context, cacheDir, name, arch string) (string, error) {
	if err := validName("package", name); err != nil {
		return "", err
	}
	apt, err := prepareApt(ctx, cacheDir, arch)
	if err != nil {
		return "", fmt.Errorf("resolve %s:%s: %w", name, arch, err)
	}
	fields, err := show(ctx, apt, name)
	if err != nil {
		return "", err
	}
	real, ok := versionedDependency(name, fields["Depends"])
	if !ok {
		return "", fmt.Errorf("resolve %s:%s: no dependency named like it with a version (depends: %q)", name, arch, fields["Depends"])
	}
	return real, nil
}

// versionedDependency finds, in a Depends field, the package named like meta with a version
// put in after one of its dashes: linux-image-6.1.0-56-amd64 for linux-image-amd64,
// linux-image-6.1.0-56-armmp-lpae for linux-image-armmp-lpae.
func versionedDependency(meta, depends string) (string, bool) {
	for _, entry := range strings.Split(depends, ",") {
		first, _, _ := strings.Cut(entry, "|")
		fields := strings.Fields(first) // "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
		if len(fields) == 0 {
			continue
		}
		dep, _, _ := strings.Cut(fields[0], ":") // a ":any" or ":arm64" qualifier
		for cut := strings.IndexByte(meta, '-'); cut > 0; {
			prefix, suffix := meta[:cut+1], meta[cut:]
			if len(dep) > len(prefix)+len(suffix) && strings.HasPrefix(dep, prefix) && strings.HasSuffix(dep, suffix) &&
				isDigit(dep[len(prefix)]) {
				return dep, true
			}
			next := strings.IndexByte(meta[cut+1:], '-')
			if next < 0 {
				break
			}
			cut += 1 + next
		}
	}
	return "", false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
