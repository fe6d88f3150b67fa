package vmimage

import (
	"compress/gzip"
	"fmt"
	"os"
)

// writeInitrd writes the initramfs, a gzip-compressed newc cpio archive, to path: the guest
// architecture's static busybox, the modules (in load order) and the /init that loads them.
// /dev/console is in the archive because the kernel opens it for /init's standard streams
// before anything could mount devtmpfs.
func writeInitrd(path string, busybox []byte, modules []module) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	defer func() {
		if closeErr := f.Close(); err == nil && closeErr != nil {
			err = fmt.Errorf("write initrd: %w", closeErr)
		}
	}()
	zw := gzip.NewWriter(f)
	cpio := newCPIOWriter(zw)
	for _, dir := range []string{"bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"} {
		cpio.dir(dir, 0o755)
	}
	cpio.charDevice("dev/console", 0o600, 5, 1)
	cpio.file("bin/busybox", 0o755, busybox)
	cpio.symlink("bin/sh", "busybox")
	names := make([]string, 0, len(modules))
	for _, m := range modules {
		cpio.file("lib/modules/"+m.name+".ko", 0o644, m.data)
		names = append(names, m.name)
	}
	cpio.file("init", 0o755, []byte(initScript(names)))
	if err := cpio.close(); err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	return nil
}
