package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// requireQemuImg fails t where qemu-img is missing (make deps installs it).
func requireQemuImg(t *testing.T) {
	t.Helper()
	hostreq.Need(t, "qemu-img")
}

// vmdkOf writes a small raw disk with some content and converts it to a
// VMDK of subformat in dir; it returns the VMDK's path.
func vmdkOf(t *testing.T, dir, subformat string) string {
	t.Helper()
	raw := filepath.Join(dir, "src.raw")
	data := make([]byte, 4<<20)
	for i := range data[:1<<20] {
		data[i] = byte(i * 7 % 251)
	}
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	vmdk := filepath.Join(dir, "disk.vmdk")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+subformat, raw, vmdk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	os.Remove(raw)
	return vmdk
}

// sumLines is the digest filesDigest should give files.
func sumLines(t *testing.T, files ...string) string {
	t.Helper()
	all := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(all, "%s %x\n", filepath.Base(f), sha256.Sum256(data))
	}
	return "sha256:" + hex.EncodeToString(all.Sum(nil))
}

// TestImportDiskDigestsTheFilesItRead checks that an imported disk's
// template carries the digest of the files qemu-img converted (a text
// descriptor's extents included), hashed during the conversion, and the
// size of the base it made, and that the base holds the image's content.
func TestImportDiskDigestsTheFilesItRead(t *testing.T) {
	requireQemuImg(t)
	for _, sub := range []string{"monolithicSparse", "monolithicFlat"} {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			vmdk := vmdkOf(t, dir, sub)
			files := []string{vmdk}
			if sub == "monolithicFlat" {
				files = append(files, filepath.Join(dir, "disk-flat.vmdk"))
			}
			store := template.Store{Dir: t.TempDir()}
			var phases []string
			res, err := Importer{Templates: store}.Import(context.Background(), Request{Path: vmdk, Name: "disk"}, func(phase string, _, _ int64) {
				if len(phases) == 0 || phases[len(phases)-1] != phase {
					phases = append(phases, phase)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := sumLines(t, files...); res.Template.Digest != want {
				t.Errorf("digest %s, want %s (of %v)", res.Template.Digest, want, files)
			}
			base := filepath.Join(store.Dir, res.Template.ID, diskFile)
			info, err := os.Stat(base)
			if err != nil {
				t.Fatal(err)
			}
			if res.Template.Size != info.Size() {
				t.Errorf("size %d, the base is %d bytes", res.Template.Size, info.Size())
			}
			if out, err := exec.Command("qemu-img", "compare", "-q", vmdk, base).CombinedOutput(); err != nil {
				t.Errorf("the base differs from the image: %v %s", err, out)
			}
			if len(phases) != 1 {
				t.Errorf("phases %q, want the conversion only", phases)
			}
		})
	}
}

// TestImportDiskCancelledLeavesNothing cancels an import during its
// conversion: neither the template nor its staging dir stays.
func TestImportDiskCancelledLeavesNothing(t *testing.T) {
	requireQemuImg(t)
	vmdk := vmdkOf(t, t.TempDir(), "monolithicSparse")
	store := template.Store{Dir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Importer{Templates: store}.Import(ctx, Request{Path: vmdk, Name: "disk"}, func(phase string, _, _ int64) {
		if phase != "" {
			cancel() // at the conversion's first report
		}
	})
	if err == nil {
		t.Fatal("a cancelled import succeeded")
	}
	if left, _ := os.ReadDir(store.Dir); len(left) > 0 {
		t.Errorf("a cancelled import left %v", left)
	}
}

// TestFileSHA256RefusesWhatIsNoLongerARegularFile: a path swapped for a
// device after the checks is not read.
func TestFileSHA256RefusesWhatIsNoLongerARegularFile(t *testing.T) {
	if _, err := template.FileSHA256(context.Background(), "/dev/zero"); err == nil {
		t.Error("hashed /dev/zero")
	}
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("abc"), 0o644)
	if got, err := template.FileSHA256(context.Background(), path); err != nil || got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("sha256 of abc: %s, %v", got, err)
	}
}

// TestImportDiskRefusedLeavesNothingRunning: the digest starts before
// qemu-img's checks; an image they refuse, or a name already taken, ends
// the import with its error, no template, no staging dir, and no hash
// still reading.
func TestImportDiskRefusedLeavesNothingRunning(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	vmdk := vmdkOf(t, dir, "monolithicSparse")
	backed := filepath.Join(dir, "backed.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "vmdk", "-b", vmdk, backed).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	store := template.Store{Dir: t.TempDir()}
	if _, err := (Importer{Templates: store}).Import(context.Background(), Request{Path: vmdk, Name: "taken"}, nil); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for _, c := range []struct {
		req  Request
		want error
	}{
		{Request{Path: backed, Name: "backed"}, api.ErrInvalid},
		{Request{Path: vmdk, Name: "taken"}, api.ErrExists},
	} {
		_, err := Importer{Templates: store}.Import(context.Background(), c.req, nil)
		if !errors.Is(err, c.want) {
			t.Errorf("import %s as %s: %v, want %v", filepath.Base(c.req.Path), c.req.Name, err, c.want)
		}
	}
	if left, _ := os.ReadDir(store.Dir); len(left) != 1 || left[0].Name() != template.Key("taken", template.TypeVM, importedArch) {
		t.Errorf("refused imports left %v", left)
	}
	// A goroutine that is ending (os/exec's, after a wait returned) is
	// still counted for a moment: a leak is one that stays.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the refused imports, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
