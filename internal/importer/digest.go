package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/template"
)

// digestResult is what filesDigest found.
type digestResult struct {
	digest string
	err    error
}

// filesDigest is the digest of the files an import reads: SHA-256 over a
// line "NAME SHA256" per file, the form a built VM template's files get.
func filesDigest(ctx context.Context, paths []string) digestResult {
	sum := sha256.New()
	for _, path := range paths {
		fileSum, err := template.FileSHA256(ctx, path)
		if err != nil {
			return digestResult{err: err}
		}
		fmt.Fprintf(sum, "%s %s\n", filepath.Base(path), fileSum)
	}
	return digestResult{digest: "sha256:" + hex.EncodeToString(sum.Sum(nil))}
}
