package ociimage

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// hostPlatform is the only platform polyvisor runs images for: runc starts
// the image's binaries natively.
var hostPlatform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// checkPlatform refuses an image whose config names another platform; an
// image that names none is taken as it is.
func checkPlatform(source, os, arch string) error {
	if (os == "" || os == hostPlatform.OS) && (arch == "" || arch == hostPlatform.Architecture) {
		return nil
	}
	return fmt.Errorf("image %s is for %s/%s, but this host runs %s; use an image built for it",
		source, os, arch, hostPlatform.String())
}

// candidate is an image manifest found while walking an index.
type candidate struct {
	desc     v1.Descriptor
	platform v1.Platform
	idx      v1.ImageIndex // the index that lists it
}

// maxIndexDepth bounds nested indexes; real ones nest once (a layout whose
// index.json points at a multi-platform index).
const maxIndexDepth = 4

// selectImage picks the image for the host platform from idx, following
// nested indexes. Platforms come from the index descriptors, or from the
// image config when a descriptor has none; an image that names no platform
// at all is taken, as checkPlatform does.
func selectImage(source string, idx v1.ImageIndex) (v1.Image, error) {
	var found []candidate
	if err := collect(idx, 0, &found); err != nil {
		return nil, fmt.Errorf("reading the index of image %s: %w", source, err)
	}
	var match []candidate
	var offered []string
	for _, c := range found {
		if c.platform.OS == "" && c.platform.Architecture == "" ||
			c.platform.OS == hostPlatform.OS && c.platform.Architecture == hostPlatform.Architecture {
			if !slices.ContainsFunc(match, func(m candidate) bool { return m.desc.Digest == c.desc.Digest }) {
				match = append(match, c)
			}
			continue
		}
		// Attestation manifests carry the platform "unknown/unknown".
		if p := c.platform.String(); p != "" && c.platform.OS != "unknown" && !slices.Contains(offered, p) {
			offered = append(offered, p)
		}
	}
	switch len(match) {
	case 1:
		img, err := match[0].idx.Image(match[0].desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("opening image %s: %w", source, err)
		}
		return img, nil
	case 0:
		if len(offered) == 0 {
			return nil, fmt.Errorf("image %s lists no image manifest for %s", source, hostPlatform.String())
		}
		return nil, fmt.Errorf("image %s has no build for %s, only for %s; use an image built for this host",
			source, hostPlatform.String(), strings.Join(offered, ", "))
	}
	var names []string
	for _, m := range match {
		name := m.desc.Annotations["org.opencontainers.image.ref.name"]
		if name == "" {
			name = m.desc.Digest.String()
		}
		names = append(names, name)
	}
	return nil, fmt.Errorf("image layout %s holds %d images for %s (%s); keep only the one to import in its index.json",
		source, len(match), hostPlatform.String(), strings.Join(names, ", "))
}

func collect(idx v1.ImageIndex, depth int, found *[]candidate) error {
	if depth > maxIndexDepth {
		return fmt.Errorf("indexes nest more than %d deep", maxIndexDepth)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range manifest.Manifests {
		switch {
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return err
			}
			if err := collect(child, depth+1, found); err != nil {
				return err
			}
		case desc.MediaType.IsImage():
			c := candidate{desc: desc, idx: idx}
			if desc.Platform != nil {
				c.platform = *desc.Platform
			} else {
				img, err := idx.Image(desc.Digest)
				if err != nil {
					return err
				}
				cf, err := img.ConfigFile()
				if err != nil {
					return err
				}
				c.platform = v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
			}
			*found = append(*found, c)
		}
	}
	return nil
}
