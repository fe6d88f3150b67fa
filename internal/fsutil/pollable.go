package fsutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// Pollable returns a copy of f registered with Go's poller and closes f:
// creack/pty leaves its master blocking, where Close does not interrupt a
// Read.
func Pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}
