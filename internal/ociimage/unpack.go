package ociimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/polyvisor/polyvisor/internal/safetar"
)

// Unpack applies the image's layers in order into dest, an existing empty
// directory, through safetar with OCI whiteouts on (opts.Whiteouts is
// forced). opts.MaxBytes bounds the whole image, not each layer. progress,
// when set, is called as stored layer bytes are read, with total the sum of
// the stored (usually compressed) layer sizes.
//
// Each layer's uncompressed digest is checked against the image config once
// the layer is applied; on any error what was unpacked stays in dest for the
// caller to remove.
func (im *Image) Unpack(ctx context.Context, dest string, opts safetar.Options, progress func(done, total int64)) (safetar.Result, error) {
	var sum safetar.Result
	var done, total int64
	for _, l := range im.layers {
		total += l.size
	}
	report := func(n int64) {
		done += n
		if progress != nil {
			progress(min(done, total), total)
		}
	}
	opts.Whiteouts = true
	limit := opts.MaxBytes
	for i, l := range im.layers {
		if limit > 0 {
			opts.MaxBytes = limit - sum.Bytes
			if opts.MaxBytes == 0 {
				opts.MaxBytes = -1 // to safetar: spent, not unlimited
			}
		}
		res, err := im.unpackLayer(ctx, l, dest, opts, report)
		sum.Files += res.Files
		sum.Dirs += res.Dirs
		sum.Links += res.Links
		sum.Bytes += res.Bytes
		sum.Warnings = append(sum.Warnings, res.Warnings...)
		if err != nil {
			return sum, fmt.Errorf("unpacking layer %d of %d of image %s: %w", i+1, len(im.layers), im.source, err)
		}
	}
	return sum, nil
}

func (im *Image) unpackLayer(ctx context.Context, l layerSource, dest string, opts safetar.Options, report func(int64)) (safetar.Result, error) {
	stored, err := l.open()
	if err != nil {
		return safetar.Result{}, err
	}
	defer stored.Close()
	tarStream, err := safetar.Decompress(&countingReader{r: stored, report: report})
	if err != nil {
		return safetar.Result{}, err
	}
	defer tarStream.Close()
	digest := sha256.New()
	r := io.TeeReader(tarStream, digest)
	res, err := safetar.Extract(ctx, r, dest, opts)
	if err != nil {
		return res, err
	}
	// The tar end marker may come before the end of the stream; the digest
	// covers all of it.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return res, fmt.Errorf("reading the rest of the layer: %w", err)
	}
	if got := hex.EncodeToString(digest.Sum(nil)); l.diffID.Algorithm == "sha256" && got != l.diffID.Hex {
		return res, fmt.Errorf("layer content has digest sha256:%s, but the image config says %s; the image is corrupt", got, l.diffID)
	}
	return res, nil
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r      io.Reader
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.report(int64(n))
	}
	return n, err
}
