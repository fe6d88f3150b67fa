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
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// metaFile is a template's description inside its directory.
const metaFile = "template.yaml"

// DefaultSuite is the Debian suite `template build debian` uses.
const DefaultSuite = "bookworm"

// Store keeps templates under one directory.
type Store struct {
	Dir string
	// AgentDir holds the guest agent built for each arch
	// (polyvisor-agent-GOARCH), which VM templates carry.
	AgentDir string
}

// cacheDir keeps downloaded Debian packages between builds.
func (s Store) cacheDir() string { return filepath.Join(s.Dir, ".cache") }

// Rootfs is the root tree of the named template.
func (s Store) Rootfs(name string) string { return filepath.Join(s.Dir, name, "rootfs") }

// Load reads the named template's description.
func (s Store) Load(name string) (*api.Template, error) {
	if !validKey(name) { // never a path: "..", "a/b"
		return nil, fmt.Errorf("template %s: %w", name, api.ErrNotFound)
	}
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
	// Templates built before VM templates existed say neither.
	if t.ID == "" {
		t.ID = name
	}
	if t.Type == "" {
		t.Type = TypeContainer
	}
	if t.Type == TypeContainer {
		t.Rootfs = s.Rootfs(name)
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
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Template types, as guests have them.
const (
	TypeContainer = "container"
	TypeVM        = "vm"
)

// Key names a template's directory: its name for a container template (the
// host's arch), NAME.vm.ARCH for a VM template of that Debian arch. Names
// are DNS labels, so the dots cannot collide with one.
func Key(name, typ, debArch string) string {
	if typ == TypeVM {
		return name + ".vm." + debArch
	}
	return name
}

// validKey reports whether key is what Key makes.
func validKey(key string) bool {
	name, rest, vm := strings.Cut(key, ".vm.")
	if guest.ValidateName(name) != nil {
		return false
	}
	if !vm {
		return true
	}
	a, err := arch.Parse(rest)
	return err == nil && a.Debian == rest
}

// Request says what to build.
type Request struct {
	Source string // "busybox", "debian" or "debian:SUITE"
	Name   string // defaults to the source with ':' turned into '-'
	Arch   string // amd64/x86_64, arm64/aarch64...; defaults to the host's
	Type   string // container (default) or vm
	// Firmware, for a VM template, is "" for direct kernel boot, or bios for a
	// disk that carries its own bootloader (vmimage.Firmwares).
	Firmware string
}

// Resolved is a validated request with its defaults filled in.
type Resolved struct {
	Request
	Kind  string // busybox or debian
	Suite string // Debian suite, for debian
	Arch  arch.Arch
	Key   string
}

// Resolve fills the request's defaults and validates it.
func (r Request) Resolve() (Resolved, error) {
	kind, suite, _ := strings.Cut(r.Source, ":")
	switch kind {
	case "busybox":
		if suite != "" {
			return Resolved{}, fmt.Errorf("%w: source %q: busybox takes no suite; use busybox", api.ErrInvalid, r.Source)
		}
	case "debian":
		if suite == "" {
			suite = DefaultSuite
		}
	default:
		return Resolved{}, fmt.Errorf("%w: source %q: use busybox or debian[:SUITE]", api.ErrInvalid, r.Source)
	}
	if r.Name == "" {
		r.Name = strings.ReplaceAll(r.Source, ":", "-")
	}
	if err := guest.ValidateName(r.Name); err != nil {
		return Resolved{}, fmt.Errorf("template %w", err)
	}
	if r.Type == "" {
		r.Type = TypeContainer
	}
	if r.Type != TypeContainer && r.Type != TypeVM {
		return Resolved{}, fmt.Errorf("%w: type %q: use container or vm", api.ErrInvalid, r.Type)
	}
	a := arch.Host()
	if r.Arch != "" {
		var err error
		if a, err = arch.Parse(r.Arch); err != nil {
			return Resolved{}, fmt.Errorf("%w: %v", api.ErrInvalid, err)
		}
	}
	if r.Firmware != "" {
		if r.Type != TypeVM {
			return Resolved{}, fmt.Errorf("%w: firmware %s: only VM templates boot through firmware; add --type vm", api.ErrInvalid, r.Firmware)
		}
		if !slices.Contains(vmimage.Firmwares, r.Firmware) {
			return Resolved{}, fmt.Errorf("%w: firmware %q: use %s, or leave it out for direct kernel boot", api.ErrInvalid, r.Firmware, strings.Join(vmimage.Firmwares, " or "))
		}
		if a.Debian != "amd64" {
			return Resolved{}, fmt.Errorf("%w: firmware %s: boots amd64 guests only, not %s", api.ErrInvalid, r.Firmware, a.Debian)
		}
	}
	if r.Type == TypeContainer && a != arch.Host() {
		return Resolved{}, fmt.Errorf("%w: arch %s: a container shares the host's %s kernel; build a VM template (--type vm) for foreign architectures", api.ErrInvalid, a.Debian, arch.Host().Debian)
	}
	if r.Type == TypeVM && kind == "debian" && a != arch.Host() {
		return Resolved{}, fmt.Errorf("%w: arch %s: Debian VM templates are built for the host's arch (%s) only; use busybox for foreign architectures", api.ErrInvalid, a.Debian, arch.Host().Debian)
	}
	return Resolved{Request: r, Kind: kind, Suite: suite, Arch: a, Key: Key(r.Name, r.Type, a.Debian)}, nil
}

// HostArch is the host's architecture in Debian's naming.
func HostArch() string { return arch.Host().Debian }

// Find returns the template a guest of typ and arch (either naming; empty
// for the host's) made from name uses.
func (s Store) Find(name, typ, archName string) (*api.Template, error) {
	a := arch.Host()
	if archName != "" {
		var err error
		if a, err = arch.Parse(archName); err != nil {
			return nil, fmt.Errorf("%w: %v", api.ErrInvalid, err)
		}
	}
	t, err := s.Load(Key(name, typ, a.Debian))
	if err != nil && typ == TypeVM {
		return nil, fmt.Errorf("template %s for %s VMs: %w: build it with 'polyvisor template build %s --type vm --arch %s'", name, a.Debian, api.ErrNotFound, name, a.Debian)
	}
	return t, err
}

// Build makes a template: the root tree is built in a staging directory,
// shifted to the containers' id map, measured and digested, then renamed
// into place. A failure or cancellation leaves nothing behind.
func (s Store) Build(ctx context.Context, r Request, progress Progress) (*api.Template, error) {
	req, err := r.Resolve()
	if err != nil {
		return nil, err
	}
	t := &api.Template{
		ID: req.Key, Name: req.Name, Type: req.Type, Source: req.Kind, Suite: req.Suite, Arch: req.Arch.Debian,
	}
	err = s.Add(t, func(staging string) error {
		rootfs := filepath.Join(staging, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return err
		}
		var err error
		switch {
		case req.Kind == "debian" && req.Type == TypeVM && s.containerTree(req) != "":
			// The same Debian as a container template already has: copy it,
			// shifted back to host ids, instead of debootstrapping again.
			progress("copying the container template's tree", 0, 0)
			if err = os.Remove(rootfs); err == nil {
				err = idmap.CopyTree(ctx, s.containerTree(req), rootfs, idmap.ShiftDown(idmap.Default()))
			}
		case req.Kind == "debian":
			err = BuildDebian(ctx, rootfs, req.Suite, req.Arch.Debian, progress)
		case req.Arch != arch.Host():
			err = BuildBusyboxArch(ctx, rootfs, req.Arch.Debian, s.cacheDir(), progress)
		default:
			err = BuildBusybox(ctx, rootfs, progress)
		}
		if err != nil {
			return err
		}
		if req.Type == TypeVM {
			return s.finishVM(ctx, req, staging, t, progress)
		}
		return FinishContainer(ctx, rootfs, t, progress)
	})
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", req.Key, err)
	}
	return t, nil
}

// Add makes template t.ID from what fill puts into a staging directory
// (rootfs/ for a container template; the files t.Boot names for a VM one)
// while completing t. The directory is renamed into place, with t written
// beside, only when fill succeeds: a failure or cancellation leaves nothing.
func (s Store) Add(t *api.Template, fill func(staging string) error) (err error) {
	if !validKey(t.ID) {
		return fmt.Errorf("%w: template %q: not a template name", api.ErrInvalid, t.ID)
	}
	final := filepath.Join(s.Dir, t.ID)
	if _, err := os.Stat(final); err == nil {
		return fmt.Errorf("template %s: %w: delete it first or choose another name", t.ID, api.ErrExists)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	staging, err := os.MkdirTemp(s.Dir, ".build-"+t.ID+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	if err = fill(staging); err != nil {
		return err
	}
	t.CreatedAt, t.UsedBy = time.Now().UTC(), []string{}
	data, err := yaml.Marshal(t)
	if err != nil {
		return err
	}
	if err = fsutil.WriteFileAtomic(filepath.Join(staging, metaFile), data, 0o644); err != nil {
		return err
	}
	if err = os.Rename(staging, final); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("template %s: %w", t.ID, api.ErrExists)
		}
		return err
	}
	return fsutil.SyncDir(s.Dir)
}

// containerTree returns the root tree of a container template built from
// the same source as req, or "".
func (s Store) containerTree(req Resolved) string {
	list, _ := s.List()
	for _, t := range list {
		if t.Type == TypeContainer && t.Source == req.Kind && t.Suite == req.Suite && t.Arch == req.Arch.Debian {
			return s.Rootfs(t.ID)
		}
	}
	return ""
}

// FinishContainer shifts a container template's tree, owned by host ids,
// to the containers' id map and records its digest and size in t.
func FinishContainer(ctx context.Context, rootfs string, t *api.Template, progress Progress) error {
	progress("shifting ownership to the container id map", 0, 0)
	if err := idmap.ShiftTree(ctx, rootfs, idmap.ShiftUp(idmap.Default())); err != nil {
		return err
	}
	progress("computing digest", 0, 0)
	digest, err := Digest(ctx, rootfs)
	if err != nil {
		return err
	}
	t.Digest = digest
	t.Size, err = fsutil.TreeSize(ctx, rootfs, fsutil.Allocated)
	return err
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
