// Package lazyre holds regular expressions that compile on first use.
//
// Every polyvisor command is one binary, so a pattern compiled in a
// package's var block is compiled, and its memory faulted in, at every CLI
// start, by commands that never match it: `polyvisor list` paid for the
// VMX and OVF parsers' patterns. A package declares its patterns with New
// instead.
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr on its first call (panicking
// there if expr is invalid, as regexp.MustCompile does) and returns the
// same *regexp.Regexp on every call, from any goroutine.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
