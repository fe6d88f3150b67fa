// Package ovf reads and writes DMTF OVF 1.x and 2.0 appliances (DSP0243):
// the .ovf descriptor, the .mf manifest and the .ova archive (a tar whose
// first member is the descriptor). Imports are hostile input: every file
// name is a plain name checked before use, every size is bounded, every
// byte written is hashed against the manifest, and nothing is ever written
// outside the directory the caller gives.
package ovf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The envelope namespaces: OVF 1.x and OVF 2.x.
const (
	NamespaceOVF1 = "http://schemas.dmtf.org/ovf/envelope/1"
	NamespaceOVF2 = "http://schemas.dmtf.org/ovf/envelope/2"
)

// Bounds on what a descriptor may ask for; beyond them it is refused.
const (
	MaxCPUs     = 1024
	MaxMemory   = 16 << 40 // 16 TiB
	MaxCapacity = 1 << 50  // 1 PiB: larger than any disk format polyvisor converts
	maxFiles    = 256      // References entries: each becomes a file on disk
	maxItems    = 1024     // hardware items: each may become a device or a warning line
)

// Descriptor is what an OVF descriptor says: the machine, and the files
// its References section lists (disks, ISOs, NVRAM), which travel with it.
type Descriptor struct {
	Machine vmdef.Machine
	Files   []File
}

// File is one entry of the References section.
type File struct {
	ID   string
	Href string // a plain file name: checked by Parse
	Size int64  // ovf:size in bytes; -1 when the descriptor does not state it
}

// file returns the entry whose Href is name.
func (d *Descriptor) file(name string) (File, bool) {
	for _, f := range d.Files {
		if f.Href == name {
			return f, true
		}
	}
	return File{}, false
}

// invalidf returns an error for hostile or malformed content. It wraps
// api.ErrInvalid, so the daemon answers 400, without printing it: callers
// add their own context (and often "invalid: " once, wrapping the
// sentinel themselves), and a message must not say it twice.
func invalidf(format string, args ...any) error {
	return invalidError{fmt.Errorf(format, args...)}
}

// invalidError is an error of hostile or malformed content.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{api.ErrInvalid, e.err} }

// checkPlainName refuses anything but a bare file name: an href or an
// archive member names a file beside the descriptor, never a path.
func checkPlainName(name string) error {
	why := ""
	switch {
	case name == "":
		why = "it is empty"
	case name == "." || name == "..":
		why = "it names a directory"
	case strings.ContainsAny(name, `/\`):
		why = "it contains a path separator; an appliance's files lie beside its descriptor"
	case len(name) > 255:
		why = "it is longer than 255 bytes"
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		why = "it contains control characters or invalid UTF-8"
	default:
		return nil
	}
	return fmt.Errorf("%q is not a plain file name: %s", truncate(name, 80), why)
}

// truncate shortens s for an error line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errNotStated marks an optional number that is absent.
var errNotStated = errors.New("not stated")

// parseCount reads a non-negative decimal number; "" is errNotStated.
func parseCount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errNotStated
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative whole number", truncate(s, 40))
	}
	return n, nil
}

// unitBytes returns how many bytes one unit of an allocation unit string
// is: the programmatic units of DSP0004 ("byte * 2^20", "byte*10^3") and
// the words vendors write ("MegaBytes", "MB", "GigaBytes").
func unitBytes(units string) (int64, error) {
	u := strings.ToLower(strings.Join(strings.Fields(units), ""))
	switch u {
	case "byte", "bytes", "b":
		return 1, nil
	case "kilobytes", "kb", "kib":
		return 1 << 10, nil
	case "megabytes", "mb", "mib":
		return 1 << 20, nil
	case "gigabytes", "gb", "gib":
		return 1 << 30, nil
	case "terabytes", "tb", "tib":
		return 1 << 40, nil
	}
	if exp, ok := strings.CutPrefix(u, "byte*2^"); ok {
		if n, err := strconv.Atoi(exp); err == nil && n >= 0 && n <= 50 {
			return 1 << n, nil
		}
	}
	if exp, ok := strings.CutPrefix(u, "byte*10^"); ok {
		if n, err := strconv.Atoi(exp); err == nil && n >= 0 && n <= 15 {
			m := int64(1)
			for range n {
				m *= 10
			}
			return m, nil
		}
	}
	return 0, fmt.Errorf("unit %q: use byte, byte * 2^N or MegaBytes", truncate(units, 40))
}

// scaled returns quantity × unit bytes, refusing results above limit.
func scaled(quantity, unit, limit int64) (int64, error) {
	if quantity > limit/unit {
		return 0, fmt.Errorf("%d × %d bytes is more than %d bytes", quantity, unit, limit)
	}
	return quantity * unit, nil
}
