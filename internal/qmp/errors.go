package qmp

import (
	"errors"
	"strings"
)

// ErrClosed is wrapped by every error that reports the connection as gone:
// Run on a closed Client, Run whose reply never came because QEMU hung up,
// and Err once Done is closed.
var ErrClosed = errors.New("connection closed")

// Error classes QEMU puts in Error.Class (QAPI's ErrorClass). Almost every
// failure is ClassGenericError; the others exist for callers that must tell
// a missing command or device apart.
const (
	ClassGenericError    = "GenericError"
	ClassCommandNotFound = "CommandNotFound"
	ClassDeviceNotActive = "DeviceNotActive"
	ClassDeviceNotFound  = "DeviceNotFound"
	ClassKVMMissingCap   = "KVMMissingCap"
)

// Error is a command failure reported by QEMU: the "error" member of a QMP
// reply. Run returns it wrapped, so use errors.As to inspect it.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// Error returns "Class: Desc" on one line, so it can end a log line or a CLI
// message whatever QEMU put in either.
func (e *Error) Error() string {
	class, desc := oneLine(e.Class), oneLine(e.Desc)
	if class == "" {
		return desc
	}
	return class + ": " + desc
}

// oneLine turns line breaks and other control characters into spaces.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
