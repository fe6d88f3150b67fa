package debpkg

import (
	"bytes"
	"context"
	"os"

	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// run runs name with args in dir and returns its standard output, through
// runcmd (its own process group: cancelling ctx kills apt-get's download
// methods and dpkg-deb's decompressor too).
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := runcmd.Run(ctx, runcmd.Cmd{
		Name: name, Args: args, Dir: dir, Stdout: &stdout,
		Env: append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"),
	})
	if err != nil {
		return nil, err
	}
	return stdout.Bytes(), nil
}
