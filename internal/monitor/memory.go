package monitor

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// firstTrimDelay lets the start settle (the guest's first output, the
// daemon's first attach) before the first trim.
const firstTrimDelay = 2 * time.Second

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
// 2.4 MiB, and because the kernel maps cached file pages around each fault
// (64 KiB at a time, or whole large folios), a monitor that has run its
// start-up path or a collection has nearly all of it mapped: two thirds of
// its PSS when it is the only monitor on the host. Unmapping costs nothing,
// the pages stay in the page cache. Measured on a lone idle monitor, its
// file-backed PSS goes from 2.4 to 1.2 MiB: the code is mostly mapped back
// by its next wake-ups, the read-only data (pclntab, type data) stays out.
func trimMemory() error {
	debug.FreeOSMemory()
	return unmapExecutableText()
}

// unmapExecutableText drops this process's mappings of its executable's
// read-only, never-written segments, with MADV_DONTNEED. That is safe for
// exactly those: a private file mapping with no private (copied-on-write)
// page reads back the same bytes from the file. A segment that is writable,
// or has private pages (relocations of a position-independent binary), is
// left alone. smaps is read through a small buffer without allocating per
// line, so that the trim leaves next to no garbage behind.
func unmapExecutableText() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("unmap executable text: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return fmt.Errorf("unmap executable text: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 4096)
	var current mapping
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Only a header with a very long path is this long: not ours.
			current = mapping{}
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("unmap executable text: read smaps: %w", err)
		}
		if m, isHeader := parseMappingHeader(line, exe); isHeader {
			current = m
		} else if value, found := bytes.CutPrefix(line, []byte("Anonymous:")); found && current.ours {
			if string(bytes.TrimSpace(value)) == "0 kB" {
				if _, _, errno := unix.Syscall(unix.SYS_MADVISE, current.start, current.end-current.start, unix.MADV_DONTNEED); errno != 0 {
					return fmt.Errorf("unmap executable text: madvise: %w", errno)
				}
			}
			current = mapping{}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// mapping is an address range from /proc/self/smaps; ours marks a
// read-only private mapping of the monitor's executable.
type mapping struct {
	start, end uintptr
	ours       bool
}

// parseMappingHeader parses a smaps header line,
// "start-end perms offset dev inode [path]", and reports whether line is
// one.
func parseMappingHeader(line []byte, exe string) (mapping, bool) {
	addrs, rest := nextField(line)
	lo, hi, isRange := bytes.Cut(addrs, []byte("-"))
	if !isRange || bytes.HasSuffix(addrs, []byte(":")) {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return mapping{}, false
	}
	perms, rest := nextField(rest)
	for range 3 { // offset, device, inode
		_, rest = nextField(rest)
	}
	path := bytes.TrimSpace(rest)
	readOnlyPrivate := len(perms) == 4 && perms[1] != 'w' && perms[3] == 'p'
	return mapping{start: uintptr(start), end: uintptr(end), ours: readOnlyPrivate && string(path) == exe}, true
}

// nextField returns the first space-separated field of b and what follows.
func nextField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " ")
	field, rest, _ = bytes.Cut(b, []byte(" "))
	return field, rest
}
