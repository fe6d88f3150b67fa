package ociimage

import (
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/polyvisor/polyvisor/internal/safetar"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

var rootTree = safetar.Options{Links: safetar.LinksInRoot, Devices: safetar.SkipDevices}

func TestOpenAndUnpackEveryFormat(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	img := busyboxImage(t)
	dir := t.TempDir()
	for format, path := range map[string]string{
		"oci-layout":          writeLayout(t, filepath.Join(dir, "layout"), img),
		"docker-save":         writeDockerSave(t, filepath.Join(dir, "save.tar"), map[string]v1.Image{"polyvisor.test/busybox:1": img}),
		"classic-docker-save": writeClassicDockerSave(t, filepath.Join(dir, "classic.tar"), img),
	} {
		t.Run(format, func(t *testing.T) {
			im, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(t.TempDir(), "rootfs")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			var lastDone, lastTotal int64
			res, err := im.Unpack(t.Context(), dest, rootTree, func(done, total int64) { lastDone, lastTotal = done, total })
			if err != nil {
				t.Fatal(err)
			}
			if lastTotal == 0 || lastDone != lastTotal {
				t.Errorf("progress ended at %d of %d, want all of a non-zero total", lastDone, lastTotal)
			}
			if res.Files != 5 || res.Bytes == 0 {
				t.Errorf("result %+v, want 5 files written", res)
			}
			for p, want := range map[string]bool{
				"a": true, "a/x": false, "d/keep": false, "d/drop": false, "d/new": true, "bin/busybox": true,
				"a/.wh.x": false, "d/.wh..wh..opq": false,
			} {
				if _, err := os.Lstat(filepath.Join(dest, p)); (err == nil) != want {
					t.Errorf("%s exists = %v, want %v", p, err == nil, want)
				}
			}
			out, err := exec.Command(filepath.Join(dest, "bin/busybox"), "echo", "ran").Output()
			if err != nil || string(out) != "ran\n" {
				t.Errorf("unpacked busybox: %q, %v", out, err)
			}

			args, env, cwd, user, err := im.Process()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(args, []string{"/bin/busybox", "echo", "hello"}) || cwd != "/a" || user != "" {
				t.Errorf("process %q in %q as %q, want [/bin/busybox echo hello] in /a as root", args, cwd, user)
			}
			if !slices.Contains(env, "FOO=bar") || !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
				t.Errorf("env %q, want FOO=bar and a PATH", env)
			}
			if im.Config.OS != "linux" || im.Config.Architecture != hostPlatform.Architecture {
				t.Errorf("platform %s/%s, want the host's", im.Config.OS, im.Config.Architecture)
			}
		})
	}
}

func TestOpenRefusesIndexWithoutHostPlatform(t *testing.T) {
	s390x, mips := otherPlatform("s390x"), otherPlatform("mips64le")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: withConfig(t, empty.Image, s390x, v1.Config{Cmd: []string{"x"}}), Descriptor: v1.Descriptor{Platform: &s390x}},
		mutate.IndexAddendum{Add: withConfig(t, empty.Image, mips, v1.Config{Cmd: []string{"x"}}), Descriptor: v1.Descriptor{Platform: &mips}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil { // nested: index.json -> index -> images
		t.Fatal(err)
	}
	_, err = Open(dir)
	if err == nil {
		t.Fatal("an index without the host's platform was accepted")
	}
	for _, want := range []string{s390x.String(), mips.String(), hostPlatform.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestOpenPicksHostPlatformFromNestedIndex(t *testing.T) {
	other := otherPlatform("s390x")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: withConfig(t, empty.Image, other, v1.Config{Cmd: []string{"other"}}), Descriptor: v1.Descriptor{Platform: &other}},
		mutate.IndexAddendum{Add: withConfig(t, empty.Image, hostPlatform, v1.Config{Cmd: []string{"host"}}), Descriptor: v1.Descriptor{Platform: &hostPlatform}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	im, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(im.Config.Cmd, []string{"host"}) {
		t.Errorf("picked the image with Cmd %q, want the host's", im.Config.Cmd)
	}
}

func TestOpenRefusesDockerSaveWithSeveralImages(t *testing.T) {
	one := withConfig(t, empty.Image, hostPlatform, v1.Config{Cmd: []string{"one"}})
	two := withConfig(t, empty.Image, hostPlatform, v1.Config{Cmd: []string{"two"}})
	file := writeDockerSave(t, filepath.Join(t.TempDir(), "two.tar"), map[string]v1.Image{"example.test/one:1": one, "example.test/two:2": two})
	_, err := Open(file)
	if err == nil || !strings.Contains(err.Error(), "example.test/one:1") || !strings.Contains(err.Error(), "example.test/two:2") {
		t.Fatalf("error %v, want one naming both tags", err)
	}
}

func TestOpenTellsPlainTarballsApart(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(plain, tarBytes(t, file("etc/hostname", "x")), 0o644); err != nil {
		t.Fatal(err)
	}
	gz := filepath.Join(dir, "rootfs.tar.gz")
	f, err := os.Create(gz)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(tarBytes(t, file("etc/hostname", "x")))
	zw.Close()
	f.Close()
	for _, p := range []string{plain, gz, t.TempDir()} {
		if _, err := Open(p); !errors.Is(err, ErrNotImage) {
			t.Errorf("Open(%s) = %v, want ErrNotImage", p, err)
		}
	}
}

func TestUnpackRefusesEscapingLayer(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	img, err := mutate.AppendLayers(empty.Image, layerOf(t, file("ok", "ok"), file("../escape", "x")))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	im, err := Open(writeLayout(t, filepath.Join(base, "layout"), withConfig(t, img, hostPlatform, v1.Config{Cmd: []string{"x"}})))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(base, "rootfs")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = im.Unpack(t.Context(), dest, rootTree, nil)
	if err == nil || !strings.Contains(err.Error(), `"../escape"`) || !errors.Is(err, safetar.ErrUnsafe) {
		t.Fatalf("Unpack = %v, want an unsafe-archive error naming ../escape", err)
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if e.Name() != "layout" && e.Name() != "rootfs" {
			t.Errorf("%s appeared beside dest", e.Name())
		}
	}
}

func TestUnpackMaxBytesCoversAllLayers(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	img, err := mutate.AppendLayers(empty.Image, layerOf(t, file("one", "12345")), layerOf(t, file("two", "12345")))
	if err != nil {
		t.Fatal(err)
	}
	im, err := Open(writeLayout(t, filepath.Join(t.TempDir(), "layout"), withConfig(t, img, hostPlatform, v1.Config{Cmd: []string{"x"}})))
	if err != nil {
		t.Fatal(err)
	}
	opts := rootTree
	opts.MaxBytes = 8
	_, err = im.Unpack(t.Context(), t.TempDir(), opts, nil)
	if err == nil || !strings.Contains(err.Error(), `"two"`) {
		t.Fatalf("Unpack = %v, want the second layer's file refused", err)
	}
}

func TestUnpackDetectsCorruptLayer(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	img, err := mutate.AppendLayers(empty.Image, layerOf(t, file("f", "real")))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeLayout(t, filepath.Join(t.TempDir(), "layout"), withConfig(t, img, hostPlatform, v1.Config{Cmd: []string{"x"}}))
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	f, err := os.Create(filepath.Join(dir, "blobs", digest.Algorithm, digest.Hex))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(tarBytes(t, file("f", "fake")))
	zw.Close()
	f.Close()
	im, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Unpack(t.Context(), t.TempDir(), rootTree, nil); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Unpack = %v, want the corrupt layer reported", err)
	}
}

func TestProcess(t *testing.T) {
	for _, c := range []struct {
		cfg      Config
		args     []string
		path     string
		cwd      string
		wantFail bool
	}{
		{cfg: Config{Cmd: []string{"/bin/sh"}}, args: []string{"/bin/sh"}, path: defaultPath, cwd: "/"},
		{cfg: Config{Entrypoint: []string{"/init"}, Env: []string{"PATH=/bin"}, WorkingDir: "/srv"}, args: []string{"/init"}, path: "PATH=/bin", cwd: "/srv"},
		{cfg: Config{Env: []string{"A=b"}}, wantFail: true},
	} {
		im := &Image{Config: c.cfg, source: "test"}
		args, env, cwd, _, err := im.Process()
		if c.wantFail {
			if err == nil {
				t.Errorf("%+v: no error, want one for an image without a command", c.cfg)
			}
			continue
		}
		if err != nil || !slices.Equal(args, c.args) || cwd != c.cwd || !slices.Contains(env, c.path) {
			t.Errorf("%+v: %q %q %q %v; want %q, %s, cwd %s", c.cfg, args, env, cwd, err, c.args, c.path, c.cwd)
		}
		if n := len(slices.DeleteFunc(env, func(kv string) bool { return !strings.HasPrefix(kv, "PATH=") })); n != 1 {
			t.Errorf("%+v: %d PATH entries, want 1", c.cfg, n)
		}
	}
}
