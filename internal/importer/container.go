package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/imageformat"
	"github.com/polyvisor/polyvisor/internal/ociimage"
	"github.com/polyvisor/polyvisor/internal/safetar"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// rootTreeOptions extract a container's root tree: links stay inside it,
// device nodes are left to runc's /dev.
func rootTreeOptions(m *vmdef.Machine) safetar.Options {
	return safetar.Options{Links: safetar.LinksInRoot, Devices: safetar.SkipDevices, Warn: func(w string) { m.Warnf("%s", w) }}
}

// importOCILayout imports an OCI image layout directory.
func (im Importer) importOCILayout(ctx context.Context, req Request, progress Progress) (*Result, error) {
	img, err := ociimage.Open(req.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrInvalid, req.Path, err)
	}
	return im.importImage(ctx, req, img, "oci-layout", progress)
}

// importTarball imports a docker save tarball, or else a root tree
// tarball (plain or gzip-compressed).
func (im Importer) importTarball(ctx context.Context, req Request, progress Progress) (*Result, error) {
	img, err := ociimage.Open(req.Path)
	if err == nil {
		return im.importImage(ctx, req, img, "docker-archive", progress)
	}
	if !errors.Is(err, ociimage.ErrNotImage) {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrInvalid, req.Path, err)
	}
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	defer f.Close()
	stream, err := safetar.Decompress(f)
	if err != nil {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrInvalid, req.Path, err)
	}
	defer stream.Close()
	tarStream := bufio.NewReaderSize(stream, 4096)
	if head, _ := tarStream.Peek(512); len(head) < 512 || !bytes.HasPrefix(head[257:], []byte("ustar")) {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrInvalid, req.Path, imageformat.ErrUnknown)
	}
	var m vmdef.Machine
	res, err := im.addContainer(ctx, req, "rootfs-tar", progress, func(rootfs string) error {
		progress("unpacking the root tree", 0, 0)
		_, err := safetar.Extract(ctx, tarStream, rootfs, rootTreeOptions(&m))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("import %s as a root tree tarball: %w", req.Path, err)
	}
	res.Machine = m
	return res, nil
}

// importImage imports a container image: its layers make the root tree,
// its config the command its guests run.
func (im Importer) importImage(ctx context.Context, req Request, img *ociimage.Image, kind string, progress Progress) (*Result, error) {
	var m vmdef.Machine
	args, env, cwd, user, err := img.Process()
	if err != nil {
		return nil, fmt.Errorf("%w: import %s: %v", api.ErrInvalid, req.Path, err)
	}
	if user != "" && user != "0" && user != "root" && user != "0:0" {
		m.Warnf("image user %q: the command runs as root inside the guest's user namespace (no host privilege); switch user in the entrypoint if it must not", user)
	}
	res, err := im.addContainer(ctx, req, kind, progress, func(rootfs string) error {
		_, err := img.Unpack(ctx, rootfs, rootTreeOptions(&m), func(done, total int64) {
			progress("unpacking layers", done, total)
		})
		return err
	}, func(t *api.Template) {
		t.Process = &api.TemplateProcess{Args: args, Env: env, Cwd: cwd}
	})
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	res.Machine = m
	return res, nil
}

// addContainer makes a container template whose root tree unpack fills.
func (im Importer) addContainer(ctx context.Context, req Request, kind string, progress Progress, unpack func(rootfs string) error, describe ...func(*api.Template)) (*Result, error) {
	name, err := templateName(req, "")
	if err != nil {
		return nil, err
	}
	t := &api.Template{
		ID: template.Key(name, template.TypeContainer, ""), Name: name, Type: template.TypeContainer,
		Source: "import", Arch: template.HostArch(), Origin: kind + " " + req.Path,
	}
	for _, fn := range describe {
		fn(t)
	}
	err = im.add(t, req, func(staging string) error {
		rootfs := filepath.Join(staging, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return err
		}
		if err := unpack(rootfs); err != nil {
			return err
		}
		return template.FinishContainer(ctx, rootfs, t, progress)
	})
	if err != nil {
		return nil, err
	}
	return &Result{Template: t}, nil
}
