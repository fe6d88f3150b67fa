package ovf

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/polyvisor/polyvisor/internal/vmdef"
)

// ExtractOVA reads an OVA archive from r, once, front to back, and writes
// the files its descriptor references into destDir, which the caller
// created empty and removes if this fails. Nothing is written outside
// destDir: members must be regular files with plain names, each is
// created new (O_EXCL, O_NOFOLLOW, beneath destDir only), no larger than
// the descriptor declares, and hashed while written; the .mf manifest,
// wherever it lies in the archive, is checked against every file at the
// end. Members the descriptor does not reference are skipped with a
// warning. Disk files are checked by content (checkDisk), and the
// returned disks carry the format found.
//
// progress, if not nil, is called with the bytes read from r so far.
func ExtractOVA(ctx context.Context, r io.Reader, destDir string, progress func(done int64)) (*Descriptor, error) {
	root, err := os.OpenRoot(destDir)
	if err != nil {
		return nil, fmt.Errorf("extract OVA: %w", err)
	}
	defer root.Close()
	tr := tar.NewReader(&countingReader{r: r, progress: progress})
	ovfName, data, err := readDescriptorMember(tr)
	if err != nil {
		return nil, err
	}
	desc, err := Parse(data)
	if err != nil {
		return nil, err
	}
	v := newVerification("OVA member", desc, ovfName, data)
	base := strings.TrimSuffix(ovfName, filepath.Ext(ovfName))
	mfName, certName := base+".mf", base+".cert"
	for _, f := range desc.Files {
		if f.Href == ovfName || f.Href == mfName || f.Href == certName {
			return nil, invalidf("OVA: the descriptor references %q, the name of the descriptor, manifest or certificate", f.Href)
		}
	}

	seen := map[string]bool{ovfName: true}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, archiveErr(err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // pax metadata for the whole archive, not a file
		}
		if err := checkMember(hdr); err != nil {
			return nil, err
		}
		if seen[hdr.Name] {
			return nil, invalidf("OVA member %q appears twice", hdr.Name)
		}
		seen[hdr.Name] = true
		switch f, referenced := desc.file(hdr.Name); {
		case hdr.Name == mfName:
			if err := v.readManifest(tr, hdr.Size); err != nil {
				return nil, err
			}
		case referenced:
			if err := v.extract(ctx, root, tr, f, hdr.Size); err != nil {
				return nil, err
			}
		default:
			if hdr.Name == certName {
				desc.Machine.Warnf("certificate %q not checked: the appliance's signature is not verified", hdr.Name)
			} else {
				desc.Machine.Warnf("OVA member %q is not referenced by the descriptor: skipped", hdr.Name)
			}
			v.present[hdr.Name] = true
			if err := copyChunks(ctx, io.Discard, tr, hdr.Size); err != nil {
				return nil, archiveErr(err)
			}
		}
	}
	for _, f := range desc.Files {
		if v.hashed[f.Href] == nil {
			return nil, invalidf("OVA: the descriptor references %q, which the archive does not contain", f.Href)
		}
	}
	if err := v.verify(); err != nil {
		return nil, err
	}
	if err := checkDisks(root, desc); err != nil {
		return nil, err
	}
	return desc, nil
}

// readDescriptorMember reads the archive's first member, which DSP0243
// requires to be the descriptor, so that it is read before any file.
func readDescriptorMember(tr *tar.Reader) (name string, data []byte, err error) {
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return "", nil, invalidf("OVA: the archive is empty")
	}
	if err != nil {
		return "", nil, archiveErr(err)
	}
	if err := checkMember(hdr); err != nil {
		return "", nil, err
	}
	if !strings.EqualFold(filepath.Ext(hdr.Name), ".ovf") {
		return "", nil, invalidf("OVA: the first member is %q; an OVA starts with its .ovf descriptor (DSP0243), so this is not one or it is damaged", hdr.Name)
	}
	if hdr.Size > vmdef.MaxXMLSize {
		return "", nil, invalidf("OVA member %q is %d bytes; a descriptor is at most %d", hdr.Name, hdr.Size, vmdef.MaxXMLSize)
	}
	if data, err = io.ReadAll(tr); err != nil {
		return "", nil, archiveErr(err)
	}
	return hdr.Name, data, nil
}

// OpenDir reads a plain .ovf and checks the files it references, which
// lie beside it: each must be a regular file in that directory (hrefs are
// plain names; a symbolic link leading out is refused), no larger than
// declared, and match NAME.mf when there is one. Nothing is copied: the
// returned disks' paths are relative to the .ovf's directory, and their
// formats are the ones their content shows.
//
// progress, if not nil, is called with the bytes hashed so far.
func OpenDir(ctx context.Context, ovfPath string, progress func(done int64)) (*Descriptor, error) {
	root, ovfName, err := openBeside(ovfPath)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	data, err := readFileIn(root, ovfName, vmdef.MaxXMLSize)
	if err != nil {
		return nil, err
	}
	return verifyDir(ctx, root, ovfName, data, progress)
}

// VerifyDir is OpenDir for a caller that has read the .ovf at ovfPath
// already: descriptor is its content, the one the manifest must match.
func VerifyDir(ctx context.Context, ovfPath string, descriptor []byte) (*Descriptor, error) {
	root, ovfName, err := openBeside(ovfPath)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return verifyDir(ctx, root, ovfName, descriptor, nil)
}

// openBeside opens the directory of a .ovf, beneath which its files are read.
func openBeside(ovfPath string) (*os.Root, string, error) {
	dir, ovfName := filepath.Split(ovfPath)
	if dir == "" {
		dir = "."
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", fmt.Errorf("open the directory of %s: %w", ovfPath, err)
	}
	return root, ovfName, nil
}

func verifyDir(ctx context.Context, root *os.Root, ovfName string, data []byte, progress func(done int64)) (*Descriptor, error) {
	desc, err := Parse(data)
	if err != nil {
		return nil, err
	}
	v := newVerification("file", desc, ovfName, data)
	mfName := strings.TrimSuffix(ovfName, filepath.Ext(ovfName)) + ".mf"
	if mf, err := readFileIn(root, mfName, MaxManifestSize); err == nil {
		if v.manifest, err = ParseManifest(mf); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	counter := &countingReader{progress: progress}
	for _, f := range desc.Files {
		if err := v.hashBeside(ctx, root, f, counter); err != nil {
			return nil, err
		}
	}
	for name := range v.manifest {
		if info, err := root.Lstat(name); err == nil && info.Mode().IsRegular() {
			v.present[name] = true
		}
	}
	if err := v.verify(); err != nil {
		return nil, err
	}
	if err := checkDisks(root, desc); err != nil {
		return nil, err
	}
	return desc, nil
}

// verification collects what is needed to check an appliance against
// its manifest once all its files have been read.
type verification struct {
	kind     string // what the files are, for error lines: "OVA member", "file"
	desc     *Descriptor
	ovfName  string
	ovfHash  *Hasher
	manifest Manifest           // nil: none (yet)
	hashed   map[string]*Hasher // referenced files read, by href
	present  map[string]bool    // other files the appliance holds
}

func newVerification(kind string, desc *Descriptor, ovfName string, ovf []byte) *verification {
	v := &verification{kind: kind, desc: desc, ovfName: ovfName, ovfHash: NewHasher(), hashed: map[string]*Hasher{}, present: map[string]bool{}}
	v.ovfHash.Write(ovf)
	return v
}

// readManifest reads the .mf member.
func (v *verification) readManifest(r io.Reader, size int64) error {
	if size > MaxManifestSize {
		return invalidf("manifest: %d bytes; a manifest is at most %d", size, MaxManifestSize)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return archiveErr(err)
	}
	v.manifest, err = ParseManifest(data)
	return err
}

// hasher returns the Hasher for a file about to be read, refusing at
// once a file a known manifest does not list.
func (v *verification) hasher(name string) (*Hasher, error) {
	if v.manifest != nil {
		if _, ok := v.manifest[name]; !ok {
			return nil, invalidf("%s %q is not listed in the manifest: its content cannot be verified", v.kind, name)
		}
	}
	return v.manifest.hasherFor(name), nil
}

// checkSize refuses a file larger than its ovf:size, and warns of one
// smaller (the manifest, when there is one, decides whether it is whole).
func (v *verification) checkSize(f File, size int64) error {
	if f.Size < 0 || size == f.Size {
		return nil
	}
	if size > f.Size {
		return invalidf("%s %q is %d bytes; the descriptor declares %d (ovf:size): refused", v.kind, f.Href, size, f.Size)
	}
	v.desc.Machine.Warnf("%s %q is %d bytes; the descriptor declares %d (ovf:size)", v.kind, f.Href, size, f.Size)
	return nil
}

// extract writes a referenced member into root, new, hashing it.
func (v *verification) extract(ctx context.Context, root *os.Root, r io.Reader, f File, size int64) error {
	if err := v.checkSize(f, size); err != nil {
		return err
	}
	h, err := v.hasher(f.Href)
	if err != nil {
		return err
	}
	out, err := root.OpenFile(f.Href, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("extract OVA member %q: %w", f.Href, err)
	}
	err = copyChunks(ctx, io.MultiWriter(out, h), r, size)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("extract OVA member %q: %w", f.Href, cerr)
	}
	if err != nil {
		return archiveErr(err)
	}
	v.hashed[f.Href] = h
	return nil
}

// hashBeside checks a referenced file beside a plain .ovf, hashing it
// when there is a manifest.
func (v *verification) hashBeside(ctx context.Context, root *os.Root, f File, counter *countingReader) error {
	file, info, err := openRegular(root, f.Href)
	if errors.Is(err, fs.ErrNotExist) {
		return invalidf("the descriptor references %q, which is not beside it", f.Href)
	}
	if err != nil {
		return err
	}
	defer file.Close()
	if err := v.checkSize(f, info.Size()); err != nil {
		return err
	}
	h := NewHasher(SHA256) // never compared without a manifest
	if v.manifest != nil {
		if h, err = v.hasher(f.Href); err != nil {
			return err
		}
		counter.r = file
		if err := copyChunks(ctx, h, counter, info.Size()); err != nil {
			return fmt.Errorf("read %q: %w", f.Href, err)
		}
	}
	v.hashed[f.Href] = h
	return nil
}

// verify checks the descriptor and every referenced file against the
// manifest, and that every file the manifest lists is there.
func (v *verification) verify() error {
	m := &v.desc.Machine
	if v.manifest == nil {
		m.Warnf("no manifest: contents not verified")
		return nil
	}
	if err := v.manifest.Verify(v.ovfName, v.ovfHash); err != nil {
		return err
	}
	for _, f := range v.desc.Files {
		if err := v.manifest.Verify(f.Href, v.hashed[f.Href]); err != nil {
			return err
		}
	}
	var listed []string
	for name := range v.manifest {
		listed = append(listed, name)
	}
	slices.Sort(listed)
	for _, name := range listed {
		if _, referenced := v.desc.file(name); referenced || name == v.ovfName {
			continue
		}
		if !v.present[name] {
			return invalidf("the manifest lists %q, which the appliance does not contain", name)
		}
		m.Warnf("the manifest lists %q, which the descriptor does not reference: not imported", name)
	}
	return nil
}

// checkDisks checks each disk file's content and records its format.
func checkDisks(root *os.Root, desc *Descriptor) error {
	for i := range desc.Machine.Disks {
		disk := &desc.Machine.Disks[i]
		if disk.Path == "" {
			continue // a blank disk the importer creates at Capacity
		}
		f, info, err := openRegular(root, disk.Path)
		if err != nil {
			return err
		}
		disk.Format, err = checkDisk(disk.Path, f, info.Size(), disk.Format)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readFileIn reads a small file of root, refusing one over limit bytes.
func readFileIn(root *os.Root, name string, limit int64) ([]byte, error) {
	f, info, err := openRegular(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info.Size() > limit {
		return nil, invalidf("%s: %d bytes; it is at most %d", name, info.Size(), limit)
	}
	return vmdef.ReadLimited(f, limit, name)
}

// openRegular opens a file of root for reading and refuses anything but
// a regular file. O_NONBLOCK keeps a FIFO planted beside a descriptor
// from blocking the open; regular files ignore it.
func openRegular(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %q: %w", name, err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = invalidf("%q is not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

// checkMember refuses an archive member that is not a regular file with
// a plain name: links, devices, FIFOs, directories, paths.
func checkMember(hdr *tar.Header) error {
	if err := checkPlainName(hdr.Name); err != nil {
		return invalidf("OVA member: %w", err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return invalidf("OVA member %q is a %s, not a regular file: an appliance holds only files", hdr.Name, typeName(hdr.Typeflag))
	}
	return nil
}

// typeName names a tar entry type for an error line.
func typeName(flag byte) string {
	switch flag {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeDir:
		return "directory"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("tar entry of type %q", flag)
}

// archiveErr marks a malformed or truncated archive as invalid input;
// cancellation and other errors pass as they are.
func archiveErr(err error) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrFieldTooLong) {
		return invalidf("OVA: the archive is damaged or truncated: %w", err)
	}
	return err
}

// copyChunk is how much copyChunks moves between cancellation checks.
const copyChunk = 1 << 20

// copyChunks copies exactly n bytes, checking ctx between chunks.
func copyChunks(ctx context.Context, dst io.Writer, src io.Reader, n int64) error {
	buf := make([]byte, min(n, copyChunk))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := io.ReadFull(src, buf[:min(n, copyChunk)])
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return werr
			}
			n -= int64(k)
		}
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r        io.Reader
	done     int64
	progress func(done int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.done += int64(n)
		if c.progress != nil {
			c.progress(c.done)
		}
	}
	return n, err
}
