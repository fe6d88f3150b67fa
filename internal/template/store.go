// Package template builds, keeps and describes the base images guests are
// cloned from. A template is a directory holding template.yaml and rootfs/,
// read-only once built, identified by a content digest.
package template

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
)

// metaFile is a template's description inside its directory.
const metaFile = "template.yaml"

// DefaultSuite is the Debian suite `template build debian` uses.
const DefaultSuite = "bookworm"

// Store keeps templates under one directory.
type Store struct {
	Dir string
}

// Rootfs is the root tree of the named template.
func (s Store) Rootfs(name string) string { return filepath.Join(s.Dir, name, "rootfs") }

// Load reads the named template's description.
func (s Store) Load(name string) (*api.Template, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, name, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("template %s: %w: build it with 'polyvisor template build'", name, api.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load template %s: %w", name, err)
	}
	var t api.Template
	if err := yaml.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("template %s: %s: %w", name, metaFile, err)
	}
	return &t, nil
}

// List returns every built template, by name.
func (s Store) List() ([]api.Template, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	var out []api.Template
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		t, err := s.Load(e.Name())
		if err != nil {
			continue // a half-removed or foreign directory is not a template
		}
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Request says what to build.
type Request struct {
	Source string // "busybox", "debian" or "debian:SUITE"
	Name   string // defaults to the source with ':' turned into '-'
	Arch   string // Debian architecture name; defaults to the host's
}

// Resolve fills the request's defaults and validates it.
func (r Request) Resolve() (Request, string, error) {
	kind, suite, _ := strings.Cut(r.Source, ":")
	switch kind {
	case "busybox":
		if suite != "" {
			return r, "", fmt.Errorf("%w: source %q: busybox takes no suite; use busybox", api.ErrInvalid, r.Source)
		}
	case "debian":
		if suite == "" {
			suite = DefaultSuite
		}
	default:
		return r, "", fmt.Errorf("%w: source %q: use busybox or debian[:SUITE]", api.ErrInvalid, r.Source)
	}
	if r.Name == "" {
		r.Name = strings.ReplaceAll(r.Source, ":", "-")
	}
	if err := guest.ValidateName(r.Name); err != nil {
		return r, "", fmt.Errorf("template %w", err)
	}
	host := HostArch()
	if r.Arch == "" {
		r.Arch = host
	}
	if r.Arch != host {
		return r, "", fmt.Errorf("%w: arch %s: container templates must match the host (%s); foreign architectures come with the vm class", api.ErrInvalid, r.Arch, host)
	}
	return r, suite, nil
}

// HostArch is the host's architecture in Debian's naming.
func HostArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	}
	return runtime.GOARCH
}

// Build makes a template: the root tree is built in a staging directory,
// shifted to the containers' id map, measured and digested, then renamed
// into place. A failure or cancellation leaves nothing behind.
func (s Store) Build(ctx context.Context, req Request, progress Progress) (t *api.Template, err error) {
	req, suite, err := req.Resolve()
	if err != nil {
		return nil, err
	}
	final := filepath.Join(s.Dir, req.Name)
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("template %s: %w: delete it first or pass --name", req.Name, api.ErrExists)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	staging, err := os.MkdirTemp(s.Dir, ".build-"+req.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	rootfs := filepath.Join(staging, "rootfs")
	if err = os.Mkdir(rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	kind, _, _ := strings.Cut(req.Source, ":")
	if kind == "busybox" {
		err = BuildBusybox(ctx, rootfs, progress)
	} else {
		err = BuildDebian(ctx, rootfs, suite, req.Arch, progress)
	}
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	progress("shifting ownership to the container id map", 0, 0)
	if err = idmap.ShiftTree(ctx, rootfs, idmap.ShiftUp(idmap.Default())); err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	progress("computing digest", 0, 0)
	digest, err := Digest(ctx, rootfs)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	size, err := treeSize(rootfs)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	t = &api.Template{
		Name: req.Name, Source: kind, Suite: suite, Arch: req.Arch,
		Digest: digest, Size: size, CreatedAt: time.Now().UTC(), UsedBy: []string{},
	}
	data, err := yaml.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	if err = fsutil.WriteFileAtomic(filepath.Join(staging, metaFile), data, 0o644); err != nil {
		return nil, err
	}
	if err = os.Rename(staging, final); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("template %s: %w", req.Name, api.ErrExists)
		}
		return nil, fmt.Errorf("build %s: %w", req.Name, err)
	}
	if err = fsutil.SyncDir(s.Dir); err != nil {
		return nil, err
	}
	return t, nil
}

// Delete removes a template; the caller checks that no guest uses it.
func (s Store) Delete(name string) error {
	if _, err := s.Load(name); err != nil {
		return err
	}
	return fsutil.RemoveAllAtomic(filepath.Join(s.Dir, name))
}

// Sweep removes what an interrupted build or delete left behind.
func (s Store) Sweep() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".build-") || strings.HasPrefix(e.Name(), fsutil.TrashPrefix) {
			errs = append(errs, os.RemoveAll(filepath.Join(s.Dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// treeSize adds up the disk blocks the tree uses, counting hardlinks once.
func treeSize(root string) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		ino, used := diskUsage(info)
		if !seen[ino] {
			seen[ino] = true
			total += used
		}
		return nil
	})
	return total, err
}
