package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// openLayout opens an OCI image layout directory. Layers are read as the
// blobs they are stored as.
func openLayout(dir string) (*Image, error) {
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return nil, fmt.Errorf("%w: directory %s has no oci-layout file, so it is not an OCI image layout", ErrNotImage, dir)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading OCI image layout %s: %w", dir, err)
	}
	img, err := selectImage(dir, idx)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the layers of image %s: %w", dir, err)
	}
	sources := make([]layerSource, len(layers))
	for i, l := range layers {
		size, err := l.Size()
		if err != nil {
			return nil, fmt.Errorf("reading layer %d of image %s: %w", i+1, dir, err)
		}
		sources[i] = layerSource{open: l.Compressed, size: size}
	}
	return newImage(dir, img, sources)
}

// openDockerSave opens a `docker save` tarball: a tar holding manifest.json,
// the image config and one tar (possibly compressed) per layer. Layers are
// read straight from their entries, so their stored sizes are known without
// recompressing anything.
func openDockerSave(file string) (*Image, error) {
	entries, err := tarEntries(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a tar archive readable without decompressing: %w", ErrNotImage, file, err)
	}
	if _, ok := entries["manifest.json"]; !ok {
		if _, ok := entries["oci-layout"]; ok {
			return nil, fmt.Errorf("%s is an OCI image layout packed as a tar; unpack it (tar -xf) and import the directory", file)
		}
		return nil, fmt.Errorf("%w: %s has no manifest.json, so it is not a docker save tarball", ErrNotImage, file)
	}
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return nil, fmt.Errorf("reading manifest.json of docker save tarball %s: %w", file, err)
	}
	switch len(manifest) {
	case 0:
		return nil, fmt.Errorf("docker save tarball %s holds no image", file)
	case 1:
	default:
		var tags []string
		for _, d := range manifest {
			tags = append(tags, strings.Join(d.RepoTags, " "))
		}
		return nil, fmt.Errorf("docker save tarball %s holds %d images (%s); save only the one to import: docker save -o FILE IMAGE:TAG",
			file, len(manifest), strings.Join(tags, ", "))
	}
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return nil, fmt.Errorf("reading docker save tarball %s: %w", file, err)
	}
	sources := make([]layerSource, len(manifest[0].Layers))
	for i, name := range manifest[0].Layers {
		hdr, err := followLinks(entries, name)
		if err != nil {
			return nil, fmt.Errorf("docker save tarball %s: layer %d: %w", file, i+1, err)
		}
		sources[i] = layerSource{size: hdr.Size, open: func() (io.ReadCloser, error) { return openEntry(file, hdr.Name) }}
	}
	return newImage(file, img, sources)
}

// tarEntries lists the regular files and links of a tar file by cleaned
// name. Reading an os.File, archive/tar seeks over contents.
func tarEntries(file string) (map[string]*tar.Header, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			entries[path.Clean(hdr.Name)] = hdr
		}
	}
}

// followLinks finds the regular file that entry name is or links to: older
// docker save output links duplicate layer.tar files to one copy.
func followLinks(entries map[string]*tar.Header, name string) (*tar.Header, error) {
	name = path.Clean(name)
	for hops := 0; hops < 8; hops++ {
		hdr, ok := entries[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("entry %q is missing", name)
		case hdr.Typeflag == tar.TypeReg:
			return hdr, nil
		case hdr.Typeflag == tar.TypeSymlink:
			name = path.Join(path.Dir(name), hdr.Linkname)
		default:
			name = path.Clean(hdr.Linkname)
		}
	}
	return nil, fmt.Errorf("entry %q links in a loop", name)
}

// openEntry returns the contents of entry name of the tar file.
func openEntry(file, name string) (io.ReadCloser, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("entry %q is missing", name)
			}
			return nil, err
		}
		if hdr.Name == name {
			return struct {
				io.Reader
				io.Closer
			}{tr, f}, nil
		}
	}
}
