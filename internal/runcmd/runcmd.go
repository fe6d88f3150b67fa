// Package runcmd runs the host tools polyvisor drives (apt-get, dpkg-deb,
// mke2fs, qemu-img, xz) the one way that holds up: found through the declared
// host requirements (a missing one says which package installs it), in a
// process group of their own, so cancelling kills whatever they started, and
// with their complaint in the error.
package runcmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// Cmd is one command to run.
type Cmd struct {
	Name   string // a host requirement's name (see hostreq), or a path
	Args   []string
	Dir    string    // working directory; empty for ours
	Env    []string  // nil for ours
	Stdin  io.Reader // nil for none
	Stdout io.Writer // nil to drop it
}

// Run runs c. A failure carries the last lines of its standard error.
func Run(ctx context.Context, c Cmd) error {
	path := c.Name
	if !strings.Contains(path, "/") {
		var err error
		if path, err = hostreq.Lookup(c.Name); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", c.Name, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.Name, strings.Join(c.Args, " "), err, LastLines(stderr.String(), 3))
	}
	return nil
}

// LastLines returns the last n non-empty lines of text joined by "; ", for
// an error message on one line.
func LastLines(text string, n int) string {
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
