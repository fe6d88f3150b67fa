package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type ent struct {
	name string
	typ  byte
	body []byte
	mode int64
}

func file(name, body string) ent {
	return ent{name: name, typ: tar.TypeReg, body: []byte(body), mode: 0o644}
}
func dir(name string) ent { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }

func tarBytes(t *testing.T, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerOf(t *testing.T, entries ...ent) v1.Layer {
	t.Helper()
	data := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func withConfig(t *testing.T, img v1.Image, p v1.Platform, c v1.Config) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = p.OS, p.Architecture, c
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// busyboxImage is the two-layer image of the tests: the host's static
// busybox and a few files, then whiteouts of some of them.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("reading the host's busybox (install busybox-static, as scripts/deps.sh does): %v", err)
	}
	lower := layerOf(t, dir("bin"), ent{name: "bin/busybox", typ: tar.TypeReg, body: bb, mode: 0o755},
		file("a/x", "x"), file("d/keep", "k"), file("d/drop", "d"))
	upper := layerOf(t, file("a/.wh.x", ""), file("d/.wh..wh..opq", ""), file("d/new", "n"))
	img, err := mutate.AppendLayers(empty.Image, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	return withConfig(t, img, hostPlatform, v1.Config{
		Entrypoint: []string{"/bin/busybox", "echo"}, Cmd: []string{"hello"},
		Env: []string{"FOO=bar"}, WorkingDir: "/a",
	})
}

func writeLayout(t *testing.T, dir string, img v1.Image) string {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(hostPlatform)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeDockerSave(t *testing.T, file string, tags map[string]v1.Image) string {
	t.Helper()
	refs := map[name.Reference]v1.Image{}
	for tag, img := range tags {
		ref, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[ref] = img
	}
	if err := tarball.MultiRefWriteToFile(file, refs); err != nil {
		t.Fatal(err)
	}
	return file
}

// writeClassicDockerSave writes img the way `docker save` did before
// Docker 25: uncompressed layer.tar files, one of them a symlink to the data.
func writeClassicDockerSave(t *testing.T, file string, img v1.Image) string {
	t.Helper()
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(hdr *tar.Header, body []byte) {
		hdr.Size, hdr.Mode = int64(len(body)), 0o644
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	var names []string
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		blob := filepath.Join("blobs", string(rune('a'+i))+".tar")
		add(&tar.Header{Name: blob, Typeflag: tar.TypeReg}, data)
		link := filepath.Join(string(rune('a'+i)), "layer.tar")
		add(&tar.Header{Name: link, Typeflag: tar.TypeSymlink, Linkname: "../" + blob}, nil)
		names = append(names, link)
	}
	add(&tar.Header{Name: "config.json", Typeflag: tar.TypeReg}, cfg)
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"classic:1"}, "Layers": names}})
	add(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg}, manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// otherPlatform is an architecture that is not the host's.
func otherPlatform(arch string) v1.Platform {
	if arch == runtime.GOARCH {
		arch += "x"
	}
	return v1.Platform{OS: "linux", Architecture: arch}
}
