package template

import (
	"io/fs"
	"syscall"
)

// diskUsage returns a file's inode number and the bytes it takes on disk.
func diskUsage(info fs.FileInfo) (ino uint64, bytes int64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino, st.Blocks * 512
	}
	return 0, info.Size()
}
