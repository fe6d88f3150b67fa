package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// runtimeError carries the OCI runtime's own one-line complaint.
type runtimeError struct {
	args   []string
	stderr string
	err    error
}

func (e *runtimeError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if msg == "" {
		msg = e.err.Error()
	}
	return fmt.Sprintf("%s %s: %s", "runtime", strings.Join(e.args, " "), oneLine(msg))
}

func (e *runtimeError) Unwrap() error { return e.err }

// runc runs the OCI runtime against this daemon's state root.
func (d *Driver) runc(ctx context.Context, args ...string) error {
	full := append([]string{"--root", d.opts.Layout.RuncRoot()}, args...)
	cmd := exec.CommandContext(ctx, d.opts.Runtime, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &runtimeError{args: args, stderr: stderr.String(), err: err}
	}
	return nil
}

// isNotExist reports whether the runtime said the container does not exist.
func isNotExist(err error) bool {
	var re *runtimeError
	return errors.As(err, &re) && strings.Contains(re.stderr, "does not exist")
}

// oneLine keeps the last meaningful line of a runtime's (often JSON-ish,
// multi-line) complaint.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return s
}
