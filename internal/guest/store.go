package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// FileName is the definition's file name inside a guest's directory.
const FileName = "guest.yaml"

// Store keeps guest definitions. The daemon assembles a guest's directory
// itself (staging, rename, trash), so a store saves into a directory it
// is given; FileStore is the one the daemon runs with, and tests wrap it
// to inject failures.
type Store interface {
	// Load reads one guest's definition; api.ErrNotFound if there is none.
	Load(name string) (*Definition, error)
	// Save writes the definition atomically into dir (the guest's
	// directory, or a staging directory while the guest is being created).
	Save(dir string, d *Definition) error
	// Names lists the guests, skipping staging and trash entries.
	Names() ([]string, error)
	// IDMapBase reads the host id range a guest claims even where its
	// definition does not load: the base of an isolated guest, or 0.
	IDMapBase(name string) uint32
}

var _ Store = FileStore{}

// FileStore keeps guest definitions under one directory, one subdirectory
// each.
type FileStore struct {
	Dir string
}

// Path is the directory of the named guest.
func (s FileStore) Path(name string) string { return filepath.Join(s.Dir, name) }

// Load reads one guest's definition.
func (s FileStore) Load(name string) (*Definition, error) {
	data, err := os.ReadFile(filepath.Join(s.Path(name), FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("guest %s: %w", name, api.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load guest %s: %w", name, err)
	}
	d, err := Parse(data)
	if err == nil && d.Name != name {
		// Every path of the guest (run dir, cgroup, runtime state) derives
		// from its name: a copied or renamed directory would act on another
		// guest's.
		err = fmt.Errorf("%w: name %q differs from its directory %q: set name: %s, or rename the directory to %s", api.ErrInvalid, d.Name, name, name, d.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("guest %s: %s: %w", name, FileName, err)
	}
	return d, nil
}

// Save writes the definition atomically into dir (the guest's directory, or
// a staging directory while the guest is being created).
func (s FileStore) Save(dir string, d *Definition) error {
	data, err := d.Marshal()
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, FileName), data, 0o640)
}

// Names lists the guests on disk, skipping staging and trash entries.
func (s FileStore) Names() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("list guests: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// IDMapBase reads the host id range a guest's definition claims, even
// where the definition does not load (a broken guest keeps its range
// until it is removed): the base of an isolated guest, or 0.
func (s FileStore) IDMapBase(name string) uint32 {
	data, err := os.ReadFile(filepath.Join(s.Path(name), FileName))
	if err != nil {
		return 0
	}
	var d struct {
		Security Security `yaml:"security"`
	}
	if yaml.Unmarshal(data, &d) != nil || d.Security.IDMap != idmap.Isolated {
		return 0
	}
	return d.Security.IDMapBase
}
