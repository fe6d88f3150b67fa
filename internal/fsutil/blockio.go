package fsutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sectorSize is the unit of /sys/dev/block/*/stat, whatever the device's.
const sectorSize = 512

// BlockIO is how many bytes the block device holding the file system at
// path (a loop device's, for a disk quota's image) has read and written
// since it was set up.
func BlockIO(path string) (read, written int64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("block I/O of %s: %w", path, err)
	}
	statFile := fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(st.Dev), unix.Minor(st.Dev))
	data, err := os.ReadFile(statFile)
	if err != nil {
		return 0, 0, fmt.Errorf("block I/O of %s: %w", path, err)
	}
	// Fields 3 and 7 (from 1) are sectors read and written.
	fields := strings.Fields(string(data))
	if len(fields) < 7 {
		return 0, 0, fmt.Errorf("block I/O of %s: %s holds %d fields", path, statFile, len(fields))
	}
	r, err1 := strconv.ParseInt(fields[2], 10, 64)
	w, err2 := strconv.ParseInt(fields[6], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("block I/O of %s: %s: not numbers", path, statFile)
	}
	return r * sectorSize, w * sectorSize, nil
}
