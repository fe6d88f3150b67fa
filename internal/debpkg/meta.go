package debpkg

import (
	"context"
	"fmt"
	"strings"
)

// ResolveMeta returns the package that the versioned metapackage name (such as
// linux-image-amd64) pulls in for arch in the host's apt sources: the dependency of its
// candidate version named like the metapackage with a version in the middle
// (linux-image-6.1.0-56-amd64).
func ResolveMeta(ctx context.Context, name, arch string) (string, error) {
	if err := validName("package", name); err != nil {
		return "", err
	}
	if err := EnsureArch(ctx, arch); err != nil {
		return "", fmt.Errorf("resolve %s:%s: %w", name, arch, err)
	}
	fields, err := show(ctx, name, arch)
	if err != nil {
		return "", err
	}
	real, ok := versionedDependency(name, fields["Depends"])
	if !ok {
		return "", fmt.Errorf("resolve %s:%s: no dependency named like it with a version (depends: %q)", name, arch, fields["Depends"])
	}
	return real, nil
}

// versionedDependency finds, in a Depends field, the package named meta's prefix (up to its
// last '-'), something, then meta's last part: linux-image-6.1.0-56-amd64 for
// linux-image-amd64.
func versionedDependency(meta, depends string) (string, bool) {
	cut := strings.LastIndexByte(meta, '-')
	if cut <= 0 {
		return "", false
	}
	prefix, suffix := meta[:cut+1], meta[cut:]
	for _, entry := range strings.Split(depends, ",") {
		first, _, _ := strings.Cut(entry, "|")
		fields := strings.Fields(first) // "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
		if len(fields) == 0 {
			continue
		}
		dep, _, _ := strings.Cut(fields[0], ":") // a ":any" or ":arm64" qualifier
		if len(dep) > len(prefix)+len(suffix) && strings.HasPrefix(dep, prefix) && strings.HasSuffix(dep, suffix) {
			return dep, true
		}
	}
	return "", false
}
