// Package ociimage opens container images stored on local disk — OCI image
// layout directories and `docker save` tarballs — and unpacks their layers
// into a root tree through safetar, so a hostile image cannot write outside
// the tree it is unpacked into.
package ociimage

import (
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrNotImage marks a path that is neither an OCI image layout nor a
// `docker save` tarball, so the importer can treat it as a plain rootfs
// tarball instead.
var ErrNotImage = errors.New("not a container image")

// Image is a container image opened from a local path.
type Image struct {
	// Image is the go-containerregistry view of the image, for callers
	// that need its digests or manifest.
	Image  v1.Image
	Config Config
	source string
	layers []layerSource
}

// Config is the part of an image's configuration polyvisor uses to run it.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// OS and Architecture are the image's platform, as in its config
	// ("linux", "amd64"); empty when the image does not say.
	OS           string
	Architecture string
}

// layerSource is one layer as it is stored, compressed or not.
type layerSource struct {
	open   func() (io.ReadCloser, error)
	size   int64   // stored size, for progress
	diffID v1.Hash // digest of the uncompressed tar, checked while unpacking
}

// Open opens the image at path: a directory with an oci-layout file, or a
// `docker save` tarball. From an index listing several images it picks the
// one for linux and this host's architecture, following nested indexes. A
// path that is neither fails with an error wrapping ErrNotImage.
func Open(path string) (*Image, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening image %s: %w", path, err)
	}
	if info.IsDir() {
		return openLayout(path)
	}
	return openDockerSave(path)
}

func newImage(source string, img v1.Image, layers []layerSource) (*Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of image %s: %w", source, err)
	}
	if err := checkPlatform(source, cf.OS, cf.Architecture); err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("image %s lists %d layers but its config %d; the image is corrupt", source, len(layers), len(cf.RootFS.DiffIDs))
	}
	for i := range layers {
		layers[i].diffID = cf.RootFS.DiffIDs[i]
	}
	return &Image{
		Image: img,
		Config: Config{
			Entrypoint:   cf.Config.Entrypoint,
			Cmd:          cf.Config.Cmd,
			Env:          cf.Config.Env,
			WorkingDir:   cf.Config.WorkingDir,
			User:         cf.Config.User,
			OS:           cf.OS,
			Architecture: cf.Architecture,
		},
		source: source,
		layers: layers,
	}, nil
}
