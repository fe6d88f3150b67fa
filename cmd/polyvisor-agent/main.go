// Command polyvisor-agent is polyvisor's agent inside VM guests: it runs
// the commands of `polyvisor exec` for the host, over the virtio-serial
// port named org.polyvisor.agent. VM templates install it as
// /usr/sbin/polyvisor-agent and have the guest's init start it (and
// restart it, should it ever exit). See package agent for the protocol.
//
//	polyvisor-agent [--port DEVICE] [--log-level debug|info|warn|error]
//	polyvisor-agent grow-root [--disk-size BYTES]
//
// grow-root makes the ext4 root file system fill its disk, after the host
// grew the disk (config set NAME disk.root.size=...): the guest's sysinit
// runs it at every boot, and the host runs it through exec after growing a
// running guest's disk, with --disk-size so that it waits for the guest's
// kernel to see the new size. It prints what it did and exits 1 on failure.
//
// Without --port it finds the port through /sys/class/virtio-ports and
// waits for it, retrying every second, if virtio_console is not loaded
// yet. It logs to stderr, which init points at the console. SIGTERM or
// SIGINT kill the commands it runs and end it with status 0; it exits 2
// for bad arguments.
//
// It is one static binary per guest architecture:
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags=-s -o polyvisor-agent ./cmd/polyvisor-agent
//
// with GOARCH amd64, arm64 or riscv64 (-s drops the symbol table and, since
// Go 1.22, the DWARF data too: about 2.7 MB each).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/growfs"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "grow-root" {
		os.Exit(growRoot(os.Args[2:]))
	}
	cfg, err := parseArgs(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if errors.Is(err, errVersion) {
		fmt.Println("polyvisor-agent", agent.Version)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "polyvisor-agent:", err)
		os.Exit(2)
	}
	// Handled rather than ignored: an ignored signal stays ignored in
	// the commands the agent runs, a handled one is reset for them. A
	// console hang-up must not end the agent, nor a broken stderr.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	agent.Run(ctx, cfg)
	cfg.Log.Info("polyvisor-agent stopped")
}

// errVersion asks main to print the version.
var errVersion = errors.New("version requested")

// parseArgs reads the command line.
func parseArgs(args []string) (agent.Config, error) {
	var cfg agent.Config
	var level slog.Level
	var version bool
	fs := flag.NewFlagSet("polyvisor-agent", flag.ContinueOnError)
	fs.StringVar(&cfg.Port, "port", "", "device to serve instead of the virtio-serial port named "+agent.PortName)
	fs.TextVar(&level, "log-level", slog.LevelInfo, "least important log level to print: debug, info, warn or error")
	fs.BoolVar(&version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if version {
		return cfg, errVersion
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

// growRoot runs the grow-root command and returns its exit status.
func growRoot(args []string) int {
	fs := flag.NewFlagSet("polyvisor-agent grow-root", flag.ContinueOnError)
	diskSize := fs.Uint64("disk-size", 0, "wait up to 10 s for the root disk to reach this size in bytes first")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	result, err := growfs.Grow(ctx, "/", *diskSize)
	if err != nil {
		fmt.Fprintln(os.Stderr, "polyvisor-agent: grow the root file system:", err)
		return 1
	}
	if result.Grown() {
		fmt.Printf("polyvisor-agent: root file system on %s grown from %d to %d MiB\n", result.Device, result.From>>20, result.To>>20)
	}
	return 0
}
