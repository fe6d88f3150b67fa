package vmimage

import (
	"context"
	"io"

	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// run runs name with args, feeding it stdin (nil for none) and writing its
// standard output to stdout (nil to drop it), through runcmd (its own
// process group: cancelling ctx kills whatever it started too).
func run(ctx context.Context, stdin io.Reader, stdout io.Writer, name string, args ...string) error {
	return runcmd.Run(ctx, runcmd.Cmd{Name: name, Args: args, Stdin: stdin, Stdout: stdout})
}
