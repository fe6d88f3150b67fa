package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// fileSHA256 hashes a file, stopping when ctx ends.
func fileSHA256(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
		}
	}
}
