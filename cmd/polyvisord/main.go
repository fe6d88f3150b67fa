// Command polyvisord is the polyvisor daemon: `polyvisor daemon` runs it.
package main

import (
	"context"
	"os"

	"github.com/polyvisor/polyvisor/internal/daemoncmd"
)

func main() {
	os.Exit(daemoncmd.Main(context.Background(), os.Args[1:]))
}
