package vmimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// initrdModules are the kernel modules the initramfs loads (with what they depend on) after the
// machine's virtio transport (archSpec.transport), because Debian builds them as modules:
// virtio_blk for the root disk; ext4 for its file system; virtio_console for the agent's
// virtio-serial port; virtio_net for networking. crc32c_generic is named because ext4 and jbd2
// checksum their metadata (mke2fs turns metadata_csum on) with the "crc32c" crypto algorithm,
// which they ask for at mount time, and which no module's depends= lists: only modprobe finds
// it, through a softdep and an alias.
var initrdModules = []string{"virtio_blk", "crc32c_generic", "ext4", "virtio_console", "virtio_net"}

// module is one loadable kernel module of a kernel package.
type module struct {
	name string // as the kernel knows it: ext4, virtio_mmio
	data []byte // the uncompressed .ko
}

// moduleTree indexes lib/modules/VERSION of an unpacked kernel package.
type moduleTree struct {
	files   map[string]string // module name -> file
	builtin map[string]bool   // modules compiled into the kernel
}

// openModuleTree indexes the modules under dir (lib/modules/VERSION) and reads which ones are
// built in from dir/modules.builtin. The package has no modules.dep: depmod makes it when the
// package is installed, so dependencies come from each module's own .modinfo.
func openModuleTree(dir string) (*moduleTree, error) {
	tree := &moduleTree{files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := moduleName(d.Name()); ok && d.Type().IsRegular() {
			tree.files[name] = path
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules: %w", err)
	}
	builtin, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("read built-in modules list: %w", err)
	}
	scanner := bufio.NewScanner(bytes.NewReader(builtin))
	for scanner.Scan() {
		if name, ok := moduleName(filepath.Base(strings.TrimSpace(scanner.Text()))); ok {
			tree.builtin[name] = true
		}
	}
	return tree, nil
}

// moduleName returns the kernel's name of the module file file (crc32c-intel.ko.xz →
// crc32c_intel), and false for a file that is not a module.
func moduleName(file string) (string, bool) {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if base, ok := strings.CutSuffix(file, ext); ok && base != "" {
			return strings.ReplaceAll(base, "-", "_"), true
		}
	}
	return "", false
}

// loadOrder returns the modules wanted names, with what they depend on, in an order insmod
// can load them one by one: every module after its dependencies. Built-in modules are
// skipped; skipped lists them.
func (t *moduleTree) loadOrder(ctx context.Context, wanted []string) (order []module, skipped []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name, neededBy string) error
	visit = func(name, neededBy string) error {
		switch {
		case state[name] == done:
			return nil
		case state[name] == visiting:
			return fmt.Errorf("kernel module %s depends on itself through %s", name, neededBy)
		case t.builtin[name]:
			state[name] = done
			skipped = append(skipped, name)
			return nil
		}
		path, ok := t.files[name]
		if !ok {
			if neededBy != "" {
				return fmt.Errorf("kernel module %s (needed by %s) is neither in the package nor built in", name, neededBy)
			}
			return fmt.Errorf("kernel module %s is neither in the package nor built in", name)
		}
		state[name] = visiting
		data, err := readModule(ctx, path)
		if err != nil {
			return err
		}
		depends, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("kernel module %s: %w", name, err)
		}
		for _, dep := range depends {
			if err := visit(dep, name); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, module{name: name, data: data})
		return nil
	}
	for _, name := range wanted {
		if err := visit(name, ""); err != nil {
			return nil, nil, err
		}
	}
	return order, skipped, nil
}

// readModule returns the uncompressed contents of a module file: Debian's kernels up to
// bookworm ship plain .ko files, later ones may compress them.
func readModule(ctx context.Context, path string) ([]byte, error) {
	var out bytes.Buffer
	var err error
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.xz"):
		err = run(ctx, nil, &out, "xz", "-dc", path)
	case strings.HasSuffix(path, ".ko.zst"):
		err = run(ctx, nil, &out, "zstd", "-dcq", path)
	case strings.HasSuffix(path, ".ko.gz"):
		err = gunzipFile(path, &out)
	default:
		err = errors.New("not a kernel module file")
	}
	if err != nil {
		return nil, fmt.Errorf("read kernel module %s: %w", filepath.Base(path), err)
	}
	return out.Bytes(), nil
}

func gunzipFile(path string, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	return err
}

// moduleDepends returns the depends= list of a module's .modinfo section: the modules whose
// symbols it uses, which must be loaded first.
func moduleDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	defer f.Close()
	section := f.Section(".modinfo")
	if section == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := section.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	value, _ := modinfoField(info, "depends")
	var depends []string
	for _, dep := range strings.Split(value, ",") {
		if dep = strings.TrimSpace(dep); dep != "" {
			depends = append(depends, strings.ReplaceAll(dep, "-", "_"))
		}
	}
	return depends, nil
}

// modinfoField returns the value of key in a .modinfo section, a run of NUL-terminated
// "key=value" strings (with NUL padding between some of them).
func modinfoField(info []byte, key string) (string, bool) {
	for _, entry := range bytes.Split(info, []byte{0}) {
		if value, ok := bytes.CutPrefix(entry, []byte(key+"=")); ok {
			return string(value), true
		}
	}
	return "", false
}
