package ovf

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Member is a finished file on disk that WriteOVA puts in the archive.
type Member struct {
	Name string // its plain name in the archive, as the descriptor's href
	Path string // where it is on disk
}

// WriteOVA writes an OVA archive to w: the descriptor first, then the
// SHA256 manifest, then the members in the given order (which must be the
// order of the descriptor's References) — the layout DSP0243 prescribes
// and ovftool writes. The manifest comes before the members, so each
// member is read twice: once to hash it, once to archive it, hashing it
// again to catch a file that changed in between.
//
// Entries are ustar, mode 0644, dated now; a member of 8 GiB or more,
// which ustar cannot size, gets GNU's base-256 size field, which ovftool,
// VirtualBox and GNU tar read.
//
// progress, if not nil, is called with a count that grows from 0 to the
// members' total size over both passes (each byte read counts half).
func WriteOVA(ctx context.Context, w io.Writer, ovfName string, ovf []byte, members []Member, progress func(done int64)) error {
	if err := checkPlainName(ovfName); err != nil || !strings.EqualFold(filepath.Ext(ovfName), ".ovf") {
		return invalidf("write OVA: descriptor name %q: use a plain name ending in .ovf", ovfName)
	}
	mfName := strings.TrimSuffix(ovfName, filepath.Ext(ovfName)) + ".mf"
	names := map[string]bool{ovfName: true, mfName: true}
	for _, m := range members {
		if err := checkPlainName(m.Name); err != nil {
			return invalidf("write OVA: member: %w", err)
		}
		if names[m.Name] {
			return invalidf("write OVA: member %q: the name is used twice or is the descriptor's or manifest's", m.Name)
		}
		names[m.Name] = true
	}

	counter := &countingReader{}
	if progress != nil {
		counter.progress = func(read int64) { progress(read / 2) }
	}
	var manifest bytes.Buffer
	sum := sha256.Sum256(ovf)
	manifest.WriteString(manifestLineFor(ovfName, SHA256, sum[:]))
	sizes := make([]int64, len(members))
	sums := make([][]byte, len(members))
	for i, m := range members {
		var err error
		if sizes[i], sums[i], err = hashMember(ctx, m, counter, -1, nil); err != nil {
			return err
		}
		manifest.WriteString(manifestLineFor(m.Name, SHA256, sums[i]))
	}

	tw := tar.NewWriter(w)
	now := time.Now().Truncate(time.Second)
	for _, small := range []struct {
		name string
		data []byte
	}{{ovfName, ovf}, {mfName, manifest.Bytes()}} {
		if err := tw.WriteHeader(entry(small.name, int64(len(small.data)), now)); err != nil {
			return fmt.Errorf("write OVA entry %q: %w", small.name, err)
		}
		if _, err := tw.Write(small.data); err != nil {
			return fmt.Errorf("write OVA entry %q: %w", small.name, err)
		}
	}
	for i, m := range members {
		if err := tw.WriteHeader(entry(m.Name, sizes[i], now)); err != nil {
			return fmt.Errorf("write OVA entry %q: %w", m.Name, err)
		}
		if _, got, err := hashMember(ctx, m, counter, sizes[i], tw); err != nil {
			return err
		} else if !bytes.Equal(got, sums[i]) {
			return fmt.Errorf("write OVA entry %q: %s changed while it was exported", m.Name, m.Path)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write OVA: %w", err)
	}
	return nil
}

// entry is the tar header of a regular file of the archive.
func entry(name string, size int64, modTime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: modTime,
		Format: tar.FormatUSTAR | tar.FormatGNU, // ustar when it can size the file
	}
}

// hashMember reads a member's file, copying it to dst when not nil, and
// returns its size and SHA256. With want >= 0 the file must still be
// that size.
func hashMember(ctx context.Context, m Member, counter *countingReader, want int64, dst io.Writer) (int64, []byte, error) {
	f, err := os.OpenFile(m.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0) // a FIFO must not block
	if err != nil {
		return 0, nil, fmt.Errorf("write OVA entry %q: %w", m.Name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("write OVA entry %q: %w", m.Name, err)
	}
	if !info.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("write OVA entry %q: %s is not a regular file", m.Name, m.Path)
	}
	size := info.Size()
	if want >= 0 && size != want {
		return 0, nil, fmt.Errorf("write OVA entry %q: %s changed size while it was exported", m.Name, m.Path)
	}
	h := sha256.New()
	out := io.Writer(h)
	if dst != nil {
		out = io.MultiWriter(dst, h)
	}
	counter.r = f
	if err := copyChunks(ctx, out, counter, size); err != nil {
		return 0, nil, fmt.Errorf("write OVA entry %q: %w", m.Name, err)
	}
	return size, h.Sum(nil), nil
}
