package monitor

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// readiness reports the outcome of the start, once, on the pipe the daemon
// blocks on. A nil writer (monitor started by hand) reports nothing.
type readiness struct {
	w io.WriteCloser
}

func (r *readiness) ok(pid int) {
	r.send("ok " + strconv.Itoa(pid))
}

func (r *readiness) fail(err error) {
	r.send("error " + oneLine(err.Error()))
}

func (r *readiness) send(line string) {
	if r.w == nil {
		return
	}
	// A daemon that died meanwhile makes this fail with EPIPE: nothing to do.
	_, _ = io.WriteString(r.w, line+"\n")
	_ = r.w.Close()
	r.w = nil
}

// oneLine folds a multi-line message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// ErrStartFailed wraps the monitor's message when it reports a failed start.
var ErrStartFailed = errors.New("guest start failed")

// ParseReady reads the line a monitor writes on its ready pipe: it returns
// the container init's pid for "ok PID", and an error wrapping
// ErrStartFailed with the monitor's message for "error MESSAGE".
func ParseReady(line string) (int, error) {
	line = strings.TrimSuffix(line, "\n")
	if msg, found := strings.CutPrefix(line, "error "); found {
		return 0, fmt.Errorf("%w: %s", ErrStartFailed, msg)
	}
	if rest, found := strings.CutPrefix(line, "ok "); found {
		pid, err := strconv.Atoi(rest)
		if err == nil && pid > 0 {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("%w: unexpected ready line %q", ErrStartFailed, line)
}
