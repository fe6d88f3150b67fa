package template

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// pendingFile marks a template made for an operation that is not complete
// yet (an import that goes on to make a guest of it): a daemon that finds
// it on start knows that operation was interrupted, and its client saw it
// fail.
const pendingFile = "pending"

// MarkPending marks the template being filled in staging (see Add) as
// made for an operation not complete yet; Settle removes the mark.
func MarkPending(staging string) error {
	return fsutil.WriteFileAtomic(filepath.Join(staging, pendingFile), nil, 0o600)
}

// Settle removes template id's pending mark: the operation it was made
// for is complete.
func (s Store) Settle(id string) error {
	if err := os.Remove(filepath.Join(s.Dir, id, pendingFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("template %s: %w", id, err)
	}
	return fsutil.SyncDir(filepath.Join(s.Dir, id))
}

// Pending lists the templates still marked pending.
func (s Store) Pending() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := os.Lstat(filepath.Join(s.Dir, e.Name(), pendingFile)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
