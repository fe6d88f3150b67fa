package vmimage

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

func TestCPIOWriterMakesWhatCpioLists(t *testing.T) {
	hostreq.Need(t, "cpio")
	var archive bytes.Buffer
	w := newCPIOWriter(&archive)
	w.dir("bin", 0o755)
	w.dir("dev", 0o755)
	w.file("bin/hello", 0o755, []byte("hello, world\n"))
	w.file("empty", 0o644, nil)
	w.symlink("bin/sh", "hello")
	w.charDevice("dev/console", 0o600, 5, 1)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if archive.Len()%4 != 0 {
		t.Fatalf("archive of %d bytes is not padded to 4", archive.Len())
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(archive.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v: %s", err, out)
	}
	listing := string(out)
	t.Logf("cpio -itv:\n%s", listing)
	for _, want := range []string{
		"drwxr-xr-x   2 root     root            0 Jan  1  1970 bin\n",
		"-rwxr-xr-x   1 root     root           13 Jan  1  1970 bin/hello\n",
		"-rw-r--r--   1 root     root            0 Jan  1  1970 empty\n",
		"lrwxrwxrwx   1 root     root            5 Jan  1  1970 bin/sh -> hello\n",
		"crw-------   1 root     root       5,   1 Jan  1  1970 dev/console\n",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q", want)
		}
	}
	cmd = exec.Command("cpio", "-i", "--quiet", "--to-stdout", "bin/hello")
	cmd.Stdin = bytes.NewReader(archive.Bytes())
	if out, err := cmd.Output(); err != nil || string(out) != "hello, world\n" {
		t.Fatalf("bin/hello extracts as %q, %v", out, err)
	}
}

func TestCPIOWriterRefusesAbsoluteNames(t *testing.T) {
	w := newCPIOWriter(&bytes.Buffer{})
	w.file("/init", 0o755, nil)
	if err := w.close(); err == nil {
		t.Fatal("an absolute entry name was accepted")
	}
}
