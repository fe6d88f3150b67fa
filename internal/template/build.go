// Package template builds, stores and describes the root filesystems guests are cloned from.
package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Progress reports a build phase; done/total are bytes or steps, total 0 when unknown.
type Progress func(phase string, done, total int64)

// reportTo returns progress, or a Progress that drops every report when progress is nil.
func reportTo(progress Progress) Progress {
	if progress == nil {
		return func(string, int64, int64) {}
	}
	return progress
}

// requireEmptyDir fails unless dir is an existing, empty directory.
func requireEmptyDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	return nil
}

// canceled wraps ctx's error when ctx has ended, so a builder killed by cancellation says so
// instead of reporting the kill's side effects.
func canceled(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
