package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
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
	_, err := d.runcOutput(ctx, args...)
	return err
}

// runcOutput is runc that returns what the runtime printed.
func (d *Driver) runcOutput(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--root", d.opts.Layout.RuncRoot()}, args...)
	cmd := exec.CommandContext(ctx, d.opts.Runtime, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &runtimeError{args: args, stderr: stderr.String(), err: err}
	}
	return stdout.Bytes(), nil
}

// isNotExist reports whether the runtime said the container does not exist.
func isNotExist(err error) bool {
	var re *runtimeError
	return errors.As(err, &re) && strings.Contains(re.stderr, "does not exist")
}

// oneLine keeps the last meaningful line of a runtime's (often JSON-ish,
// multi-line) complaint, and of a log line (time="…" level=error msg="…")
// only its message.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return logMessage(l)
		}
	}
	return s
}

// logMessage returns the msg="…" of a logrus line as runc writes it, or
// line itself when it is not one.
func logMessage(line string) string {
	i := strings.Index(line, " msg=")
	if !strings.HasPrefix(line, "time=") || i < 0 {
		return line
	}
	rest := line[i+len(" msg="):]
	if !strings.HasPrefix(rest, `"`) {
		if end := strings.IndexByte(rest, ' '); end >= 0 {
			return rest[:end]
		}
		return rest
	}
	for end := 1; end < len(rest); end++ {
		if rest[end] == '\\' {
			end++
			continue
		}
		if rest[end] == '"' {
			if msg, err := strconv.Unquote(rest[:end+1]); err == nil {
				return msg
			}
			break
		}
	}
	return line
}
