package runc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Error is a runtime command that failed: the runtime's own message, read
// from its JSON log, and how the command ended. It matches (errors.Is) the
// api sentinel its message means, if any: api.ErrNotFound, api.ErrExists,
// api.ErrNotRunning or api.ErrConflict.
type Error struct {
	Runtime string // the binary
	Command string // run, delete, exec…
	ID      string // the container's id
	Message string // what the runtime said, on one line; "" if nothing
	Err     error  // how the command ended: an *exec.ExitError, a context's error
	Kind    error  // the api sentinel Message means, or nil
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s %s %s: %s", e.Runtime, e.Command, e.ID, msg)
}

func (e *Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// kinds maps what runc and crun say to the api sentinels, first match
// winning; matched in lower case. This is the one place that reads the
// runtimes' words.
var kinds = []struct {
	says string
	kind error
}{
	{"container does not exist", api.ErrNotFound},           // runc (libcontainer.ErrNotExist); not a missing rootfs or bundle
	{"status`: no such file or directory", api.ErrNotFound}, // crun: error opening file `ROOT/ID/status`
	{"already exists", api.ErrExists},                       // runc: container with given ID already exists; crun: container `ID` already exists
	{"id already in use", api.ErrExists},                    // runc: id already in use
	{"cannot exec in a stopped", api.ErrNotRunning},         // runc exec of a stopped container
	{"not running", api.ErrNotRunning},                      // runc: container not running
	{"not in running state", api.ErrNotRunning},             // crun
	{"not paused", api.ErrConflict},                         // runc resume of a running container
	{"is paused", api.ErrConflict},                          // runc: container paused
	{"not stopped", api.ErrConflict},                        // runc delete of a running container without --force
}

// kindOf is the api sentinel the runtime's message means, or nil.
func kindOf(msg string) error {
	msg = strings.ToLower(msg)
	for _, k := range kinds {
		if strings.Contains(msg, k.says) {
			return k.kind
		}
	}
	return nil
}

// failure is the *Error of a command that ended with err, its log in log.
func (r *Runtime) failure(ctx context.Context, command, id string, log *os.File, err error) *Error {
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	msg := logMessage(log)
	return &Error{Runtime: r.Name(), Command: command, ID: id, Message: msg, Err: err, Kind: kindOf(msg)}
}

// logMessage reads a command's log (at most its first 64 KiB) and returns
// its error message.
func logMessage(log *os.File) string {
	data, _ := io.ReadAll(io.NewSectionReader(log, 0, 64<<10))
	return ParseLog(data)
}

// logEntry is one line of the runtimes' JSON log.
type logEntry struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// ParseLog returns what a runtime's log says went wrong, on one line: the
// messages of its error and fatal entries (runc and crun log one JSON
// object a line), or, when it has none, the last line that is not JSON
// (what the runtime wrote to stderr outside the log: a Go panic, a
// loader's complaint). "" when it says nothing.
func ParseLog(data []byte) string {
	var errs []string
	var plain string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var e logEntry
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			plain = line
			continue
		}
		if (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			msg := oneLine(e.Msg)
			if len(errs) == 0 || errs[len(errs)-1] != msg {
				errs = append(errs, msg)
			}
		}
	}
	if len(errs) > 0 {
		return strings.Join(errs, "; ")
	}
	return plain
}

// oneLine folds a message's line breaks into "; ".
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ; ")), " ")
}

// fcntlSetAppend adds O_APPEND to fd's flags.
func fcntlSetAppend(fd int) (int, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return 0, err
	}
	return unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_APPEND)
}

// IsNotExist reports whether err is the runtime saying the container does
// not exist.
func IsNotExist(err error) bool {
	var e *Error
	return errors.As(err, &e) && errors.Is(e.Kind, api.ErrNotFound)
}
