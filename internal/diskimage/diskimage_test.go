package diskimage

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

const descriptor = `# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="twoGbMaxExtentSparse"

# Extent description
RW 4192256 SPARSE "disk-s001.vmdk"
RW 4192256 SPARSE "disk-s002.vmdk"

ddb.adapterType = "lsilogic"
`

func TestDescriptorExtentsNamesFilesBesideIt(t *testing.T) {
	files, err := DescriptorExtents(strings.NewReader(descriptor))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(files, ",") != "disk-s001.vmdk,disk-s002.vmdk" {
		t.Errorf("extents %v", files)
	}
}

func TestDescriptorExtentsRefusesEscapesAndParents(t *testing.T) {
	for name, text := range map[string]string{
		"absolute":     `RW 8 FLAT "/etc/shadow" 0`,
		"dotdot":       `RW 8 FLAT "../secret.vmdk" 0`,
		"subdirectory": `RW 8 SPARSE "a/b.vmdk"`,
		"device":       `RW 8 FLAT "/dev/sda" 0`,
		"parent":       "parentFileNameHint=\"base.vmdk\"\nRW 8 SPARSE \"d.vmdk\"",
		"none":         "version=1\n",
		"huge":         strings.Repeat("#", 70<<10),
	} {
		if _, err := DescriptorExtents(strings.NewReader(text)); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: got %v, want a refusal", name, err)
		}
	}
}

func FuzzDescriptorExtents(f *testing.F) {
	f.Add(descriptor)
	f.Add(`RW 8 FLAT "../x" 0`)
	f.Fuzz(func(t *testing.T, text string) {
		files, err := DescriptorExtents(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, name := range files {
			if name == "" || name == ".." || strings.ContainsAny(name, "/\\\x00") {
				t.Fatalf("accepted extent %q", name)
			}
		}
	})
}

func TestReadProgressParsesQemuImgOutput(t *testing.T) {
	var got []int64
	readProgress(strings.NewReader("    (0.00/100%)\r    (12.50/100%)\r    (100.00/100%)\n"), func(done, total int64) {
		if total != 10000 {
			t.Errorf("total %d", total)
		}
		got = append(got, done)
	})
	if len(got) != 3 || got[1] != 1250 || got[2] != 10000 {
		t.Errorf("progress %v", got)
	}
}

func TestCheckSelfContainedRefusesBackingFiles(t *testing.T) {
	dir := t.TempDir()
	base, overlay := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "overlay.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", base, "16M"},
		{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay},
	} {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v %s", args, err, out)
		}
	}
	ctx := context.Background()
	for path, refused := range map[string]bool{base: false, overlay: true} {
		info, err := Inspect(ctx, path, "qcow2")
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSelfContained(path, info); (err != nil) != refused {
			t.Errorf("%s: CheckSelfContained = %v, want refused %v", filepath.Base(path), err, refused)
		}
	}
	info, _ := Inspect(ctx, base, "qcow2")
	info.FormatSpecific.Data.Extents = append(info.FormatSpecific.Data.Extents, struct {
		Filename string `json:"filename"`
	}{Filename: "/etc/shadow"})
	if err := CheckSelfContained(base, info); err == nil {
		t.Error("an extent outside the image's directory passed")
	}
}

func TestConvertReportsProgressAndKeepsContent(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.qcow2"), filepath.Join(dir, "dst.vhdx")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", src, "32M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var last int64
	if err := Convert(context.Background(), src, "qcow2", dst, "vhdx", nil, func(done, total int64) { last = done }); err != nil {
		t.Fatal(err)
	}
	if last != 10000 {
		t.Errorf("last progress %d, want 10000", last)
	}
	if out, err := exec.Command("qemu-img", "compare", "-q", src, dst).CombinedOutput(); err != nil {
		t.Errorf("converted image differs: %v %s", err, out)
	}
	if err := Convert(context.Background(), filepath.Join(dir, "missing"), "qcow2", filepath.Join(dir, "x"), "raw", nil, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("converting a missing file: %v", err)
	}
}
