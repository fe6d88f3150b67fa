package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// digestResult is what filesDigest found.
type digestResult struct {
	digest string
	err    error
}

// filesDigest is the digest of the files an import reads: SHA-256 over a
// line "NAME SHA256" per file, the form template.DescribeVMFiles gives a
// built template's files.
func filesDigest(ctx context.Context, paths []string) digestResult {
	sum := sha256.New()
	for _, path := range paths {
		fileSum, err := fileSHA256(ctx, path)
		if err != nil {
			return digestResult{err: err}
		}
		fmt.Fprintf(sum, "%s %s\n", filepath.Base(path), fileSum)
	}
	return digestResult{digest: "sha256:" + hex.EncodeToString(sum.Sum(nil))}
}

// fileSHA256 hashes a file, stopping when ctx ends. What is opened must
// still be the regular file checked before, and is read to the size it had
// when opened: a path swapped meanwhile for a device or a pipe would
// otherwise be read forever.
func fileSHA256(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is no longer a regular file", api.ErrInvalid, filepath.Base(path))
	}
	h := sha256.New()
	r := io.LimitReader(f, info.Size())
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
		}
	}
}
