// Command polyvisor is the CLI and the daemon of polyvisor, one manager
// for every class of virtualization on a Linux server.
package main

import (
	"context"
	"os"

	"github.com/polyvisor/polyvisor/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:]))
}
