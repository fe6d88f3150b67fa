package stream

import (
	"errors"
	"fmt"
	"io"
)

// CopySession copies an exec session's output frames to stdout and stderr
// until its exit frame, and returns the exit code; an error frame or a
// session that ends without an exit code is an error.
func CopySession(r io.Reader, stdout, stderr io.Writer) (int, error) {
	for {
		f, err := ReadFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("the daemon closed the session without an exit code")
			}
			return 0, fmt.Errorf("session: %w", err)
		}
		switch f.Type {
		case Stdout:
			stdout.Write(f.Data)
		case Stderr:
			stderr.Write(f.Data)
		case Exit:
			code, err := DecodeExit(f.Data)
			return int(code), err
		case Error:
			return 0, errors.New(string(f.Data))
		}
	}
}
