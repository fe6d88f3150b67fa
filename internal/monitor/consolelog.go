package monitor

import (
	"errors"
	"fmt"
	"os"
)

// consoleLog is the guest's console history: a file that never grows past
// max bytes. When a write would pass max, the file becomes path+".1"
// (replacing the older generation) and a new one is started. Writes may be
// split across the two files.
type consoleLog struct {
	path string
	max  int64
	f    *os.File
	size int64
}

// openConsoleLog opens path for appending, keeping what an earlier run of
// the guest left there.
func openConsoleLog(path string, max int64) (*consoleLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open console log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open console log: %w", err)
	}
	return &consoleLog{path: path, max: max, f: f, size: fi.Size()}, nil
}

// Write appends p, rotating as often as needed.
func (l *consoleLog) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if l.size >= l.max {
			if err := l.rotate(); err != nil {
				return written, err
			}
		}
		n, err := l.f.Write(p[:min(int64(len(p)), l.max-l.size)])
		l.size += int64(n)
		written += n
		if err != nil {
			return written, fmt.Errorf("write console log: %w", err)
		}
		p = p[n:]
	}
	return written, nil
}

// rotate renames the full file to path+".1" and starts an empty one. When
// it fails the write is dropped rather than let the file grow past max; the
// next write tries again.
func (l *consoleLog) rotate() error {
	// After a rotation that failed half way, the file is already renamed.
	if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate console log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("rotate console log: %w", err)
	}
	l.f.Close()
	l.f, l.size = f, 0
	return nil
}

// Close closes the current file.
func (l *consoleLog) Close() error {
	return l.f.Close()
}
