package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteLayout writes the directory tree rootfs as a one-layer image in a new
// OCI image layout at dest, which must not exist yet. cfg supplies the
// command and platform (OS defaults to linux, Architecture to the host's).
// Owners, modes, times, symlinks and hardlinks are kept; extended
// attributes and sockets are not. On error dest is removed.
func WriteLayout(ctx context.Context, rootfs, dest string, cfg Config) (err error) {
	if err := os.Mkdir(dest, 0o755); err != nil {
		return fmt.Errorf("creating OCI image layout: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dest)
			err = fmt.Errorf("writing OCI image layout %s from %s: %w", dest, rootfs, err)
		}
	}()
	p, err := layout.Write(dest, empty.Index)
	if err != nil {
		return err
	}
	layer, diffID, err := writeLayerBlob(ctx, rootfs, dest)
	if err != nil {
		return err
	}
	platform := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture}
	if platform.OS == "" {
		platform.OS = hostPlatform.OS
	}
	if platform.Architecture == "" {
		platform.Architecture = hostPlatform.Architecture
	}
	config, err := writeJSONBlob(p, types.OCIConfigJSON, v1.ConfigFile{
		Created:      v1.Time{Time: time.Now().UTC().Truncate(time.Second)},
		OS:           platform.OS,
		Architecture: platform.Architecture,
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		Config: v1.Config{
			Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env,
			WorkingDir: cfg.WorkingDir, User: cfg.User,
		},
	})
	if err != nil {
		return err
	}
	manifest, err := writeJSONBlob(p, types.OCIManifestSchema1, v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        config,
		Layers:        []v1.Descriptor{layer},
	})
	if err != nil {
		return err
	}
	manifest.Platform = &platform
	return p.AppendDescriptor(manifest)
}

func writeJSONBlob(p layout.Path, mt types.MediaType, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, size, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(b))); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: h}, nil
}

// writeLayerBlob tars and gzips rootfs in one pass straight into the
// layout's blob directory, hashing both the tar (the diff ID) and the gzip
// stream (the blob digest) on the way.
func writeLayerBlob(ctx context.Context, rootfs, dest string) (v1.Descriptor, v1.Hash, error) {
	blobs := filepath.Join(dest, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	tmp, err := os.CreateTemp(blobs, ".layer-*")
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	blobHash, tarHash := sha256.New(), sha256.New()
	counter := &countingWriter{}
	zw := gzip.NewWriter(io.MultiWriter(tmp, blobHash, counter))
	if err := writeTree(ctx, io.MultiWriter(zw, tarHash), rootfs); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	if err := zw.Close(); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	if err := tmp.Close(); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	digest, diffID := sha256Hash(blobHash), sha256Hash(tarHash)
	if err := os.Rename(tmp.Name(), filepath.Join(blobs, digest.Hex)); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	return v1.Descriptor{MediaType: types.OCILayer, Size: counter.n, Digest: digest}, diffID, nil
}

func sha256Hash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// writeTree writes the tree under rootfs as a tar stream, in lexical order.
// Every lookup goes through an os.Root, so a symlink in the tree — the
// tree may be a guest's — is recorded as a link and never followed out of
// it.
func writeTree(ctx context.Context, w io.Writer, rootfs string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	fsys := root.FS()
	tw := tar.NewWriter(w)
	firstName := map[[2]uint64]string{} // device and inode of multiply linked files
	err = fs.WalkDir(fsys, ".", func(name string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		info, err := root.Lstat(name)
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil // a socket is not archivable, and means nothing once copied
		}
		var target string
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = root.Readlink(name); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if info.IsDir() {
			hdr.Name += "/"
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, seen := firstName[key]; seen {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				firstName[key] = name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the layer tar: %w", err)
	}
	return nil
}
