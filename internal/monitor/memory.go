package monitor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// trimInterval is how often an idle monitor gives memory back. It is under
// the Go runtime's forced-GC period (2 minutes), so that the runtime never
// collects on its own while the monitor is idle: each collection maps much
// of the binary's code back in, and only a trim after it unmaps it again.
const trimInterval = 100 * time.Second

// trimMemory hands back to the host what the monitor does not need while
// idle: free heap pages (after a collection), and the mappings of the code
// and read-only data it has run through.
//
// The second matters most. A Go binary's text and read-only data are about
// 2.4 MiB here, and because the kernel maps the cached file pages around
// each fault ("fault around", 64 KiB at a time), a monitor that has run its
// start-up path, or a collection, has nearly all of it mapped: two thirds
// of its PSS when it is the only monitor. Unmapping those pages costs
// nothing: they stay in the page cache, and the few an idle monitor touches
// are mapped again on first use.
func trimMemory() error {
	debug.FreeOSMemory()
	return unmapExecutableText()
}

// unmapExecutableText drops this process's mappings of its executable's
// read-only, never-written segments, with MADV_DONTNEED. That is safe for
// exactly those: a private file mapping with no private (copied-on-write)
// page reads back the same bytes from the file. A segment that is writable,
// or has private pages (relocations of a position-independent binary), is
// left alone.
func unmapExecutableText() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("unmap executable text: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return fmt.Errorf("unmap executable text: %w", err)
	}
	var start, end uintptr
	candidate := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			// A mapping's header: "start-end perms offset dev inode [path]".
			start, end, candidate = parseMapping(fields, exe)
			continue
		}
		if candidate && len(fields) >= 2 && fields[0] == "Anonymous:" {
			if fields[1] == "0" {
				if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_DONTNEED); errno != 0 {
					return fmt.Errorf("unmap executable text: madvise: %w", errno)
				}
			}
			candidate = false
		}
	}
	return nil
}

// parseMapping reads a smaps header and reports whether the mapping is a
// read-only, private mapping of exe.
func parseMapping(fields []string, exe string) (start, end uintptr, readOnlyExe bool) {
	if len(fields) < 6 || strings.Join(fields[5:], " ") != exe {
		return 0, 0, false
	}
	perms := fields[1]
	if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
		return 0, 0, false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
