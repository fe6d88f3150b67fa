// Package diskimage inspects and converts disk images with qemu-img, the
// field's tool for every format polyvisor imports and exports, and keeps
// hostile images from reaching files they do not contain.
package diskimage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Info is what qemu-img info says of an image.
type Info struct {
	VirtualSize     int64  `json:"virtual-size"`
	ActualSize      int64  `json:"actual-size"`
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Type string `json:"type"`
		Data struct {
			DataFile string `json:"data-file"`
			Extents  []struct {
				Filename string `json:"filename"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

// Inspect runs qemu-img info on path; format, when given, is trusted
// instead of probed. -U reads an image a running QEMU holds. qemu-img info
// does not open backing files.
func Inspect(ctx context.Context, path, format string) (Info, error) {
	var info Info
	args := []string{"info", "-U", "--output", "json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	var stdout bytes.Buffer
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: append(args, path), Stdout: &stdout}); err != nil {
		return info, fmt.Errorf("inspect %s: %w", filepath.Base(path), err)
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		return info, fmt.Errorf("inspect %s: qemu-img info: %w", filepath.Base(path), err)
	}
	return info, nil
}

// CheckSelfContained refuses an image that would make qemu-img read other
// files: a backing file, a qcow2 external data file, or a VMDK extent
// outside the image's own directory. An imported image names whatever its
// author liked; polyvisor reads only what the user handed it.
func CheckSelfContained(path string, info Info) error {
	name := filepath.Base(path)
	if info.BackingFilename != "" {
		return fmt.Errorf("%w: %s: it is a differencing image on %q; import the image it is based on, or flatten it first with 'qemu-img convert'", api.ErrInvalid, name, info.BackingFilename)
	}
	if f := info.FormatSpecific.Data.DataFile; f != "" {
		return fmt.Errorf("%w: %s: its data lives in the external file %q; flatten it first with 'qemu-img convert'", api.ErrInvalid, name, f)
	}
	dir := filepath.Dir(path)
	for _, e := range info.FormatSpecific.Data.Extents {
		if e.Filename == path {
			continue
		}
		if rel, err := filepath.Rel(dir, e.Filename); err != nil || strings.Contains(rel, "/") || rel == ".." {
			return fmt.Errorf("%w: %s: extent %q lies outside the descriptor's directory", api.ErrInvalid, name, e.Filename)
		}
	}
	return nil
}

// descriptorExtent matches an extent line of a VMDK text descriptor:
// ACCESS SECTORS TYPE "FILE" [OFFSET].
var descriptorExtent = lazyre.New(`^\s*(RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]*)"`)

// DescriptorExtents reads a VMDK text descriptor (at most 64 KiB) and
// returns the extent files it names, refusing any that is not a plain file
// name beside it, and a differencing descriptor. It runs before qemu-img
// opens anything.
func DescriptorExtents(r io.Reader) ([]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<10+1))
	if err != nil {
		return nil, err
	}
	if len(data) > 64<<10 {
		return nil, fmt.Errorf("%w: VMDK descriptor larger than 64 KiB", api.ErrInvalid)
	}
	var files []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if key, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(key) == "parentFileNameHint" {
			return nil, fmt.Errorf("%w: VMDK descriptor line %d: it is a differencing disk (parentFileNameHint); import its parent, or flatten it first with 'qemu-img convert'", api.ErrInvalid, i+1)
		}
		m := descriptorExtent().FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := m[2]
		if f == "" || f == "." || f == ".." || strings.ContainsAny(f, "/\\\x00") {
			return nil, fmt.Errorf("%w: VMDK descriptor line %d: extent %q is not a file beside the descriptor", api.ErrInvalid, i+1, f)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: VMDK descriptor names no extent", api.ErrInvalid)
	}
	return files, nil
}

// progressLine matches qemu-img's -p output: "    (12.34/100%)".
var progressLine = lazyre.New(`\((\d+(?:\.\d+)?)/100%\)`)

// Convert copies src (of srcFormat, "" to probe) into a new image dst of
// dstFormat with qemu-img convert, passing opts (-o ...) and reporting
// progress in hundredths of a percent (done of 10000).
//
// A source of known format is read through io_uring where the host has it:
// qemu-img's default thread pool hands every 64 KiB read to a worker thread
// and back, and that cost a 1 GiB VMDK's conversion 1.0 s of CPU here
// against 0.72 s with io_uring, CPU the import's digest needs beside it. A
// host without io_uring gets the thread pool.
func Convert(ctx context.Context, src, srcFormat, dst, dstFormat string, opts []string, progress func(done, total int64)) error {
	if srcFormat == "" {
		return convert(ctx, src, []string{src}, dst, dstFormat, opts, progress)
	}
	err := convert(ctx, src, sourceOpts(src, srcFormat, "io_uring"), dst, dstFormat, opts, progress)
	if err != nil && ctx.Err() == nil && noIOUring(err) {
		err = convert(ctx, src, []string{"-f", srcFormat, src}, dst, dstFormat, opts, progress)
	}
	return err
}

// sourceOpts names src, of format, to qemu-img as an --image-opts
// argument, read by the file driver with aio ("" for qemu-img's default).
func sourceOpts(src, format, aio string) []string {
	opts := "driver=" + format + ",file.driver=file,file.filename=" + strings.ReplaceAll(src, ",", ",,")
	if aio != "" {
		opts += ",file.aio=" + aio
	}
	return []string{"--image-opts", opts}
}

// noIOUring reports whether qemu-img failed because the host refused it
// io_uring (a kernel without it, or io_uring_disabled), or was built
// without it.
func noIOUring(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Unable to use io_uring") || strings.Contains(msg, "io_uring was specified, but is not supported")
}

// convert runs qemu-img convert of src, which the arguments source name
// and open, to dst, with opts.
func convert(ctx context.Context, src string, source []string, dst, dstFormat string, opts []string, progress func(done, total int64)) error {
	args := append([]string{"convert", "-p", "-O", dstFormat}, opts...)
	args = append(append(args, source...), dst)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		readProgress(pr, progress)
	}()
	err := runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: args, Stdout: pw})
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("convert %s to %s: %w", filepath.Base(src), dstFormat, err)
	}
	return nil
}

// readProgress turns qemu-img's carriage-return separated progress into
// calls of progress, until r ends.
func readProgress(r io.Reader, progress func(done, total int64)) {
	buf := make([]byte, 4096)
	var pending []byte
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexAny(pending, "\r\n")
			if i < 0 {
				break
			}
			if m := progressLine().FindSubmatch(pending[:i]); m != nil && progress != nil {
				pct, _ := strconv.ParseFloat(string(m[1]), 64)
				progress(int64(pct*100), 10000)
			}
			pending = pending[i+1:]
		}
		if err != nil {
			return
		}
	}
}
