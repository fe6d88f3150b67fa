package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The monitor runs once per guest, so what it links weighs once per guest.
// Package net brings net/http-sized initialisation and, by default, cgo:
// a dynamically linked monitor with libc's malloc arenas and a pthread
// stack per thread, measured at about 420 KiB more PSS per idle monitor.
// Nothing the monitor imports may pull them in again.
func TestMonitorLinksNeitherNetNorCgo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := map[string]string{
		"net":         "package net (a dependency imports net or net/http)",
		"runtime/cgo": "cgo (libc, malloc arenas, pthread stacks)",
		"os/user":     "os/user (cgo's getpwnam)",
	}
	for _, pkg := range strings.Fields(string(out)) {
		if why, ok := forbidden[pkg]; ok {
			t.Errorf("polyvisor-monitor links %s: find the import with `go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./cmd/polyvisor-monitor`", why)
		}
	}
}
