// Command polyvisor-probe measures the machine it runs on (the host, a
// container, a VM, an emulated guest) with the same workloads everywhere,
// so that `polyvisor bench` can set the classes side by side.
//
//	polyvisor-probe [--size quick|default|thorough] [--dir DIR] [--only NAME[,NAME...]] [--peer HOST:PORT]
//	polyvisor-probe --serve ADDR
//
// It prints a probe.Output as indented JSON on stdout and its progress on
// stderr. A workload that fails has an error in the JSON and the probe
// still exits 0; only bad arguments exit 2. --serve makes it the sink
// that net.tcp on another probe sends to: it prints the address it
// listens on, one line on stdout, and serves until SIGTERM or SIGINT.
//
// It is one static binary per guest architecture:
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=riscv64 go build -trimpath -ldflags=-s -o polyvisor-probe ./cmd/polyvisor-probe
//
// with GOARCH amd64, arm64 or riscv64.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

func main() {
	// proc.spawn's child: exit before anything else costs time.
	if len(os.Args) == 2 && os.Args[1] == probe.ExitArg {
		os.Exit(0)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the command line asks for.
type config struct {
	opts  probe.Options
	serve string // sink mode's address
}

// parseArgs reads the command line.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var only string
	fs := flag.NewFlagSet("polyvisor-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.opts.Size, "size", probe.SizeDefault, "how much to measure: quick, default or thorough")
	fs.StringVar(&cfg.opts.Dir, "dir", "", "directory for the disk workloads' file (default /var/tmp, else the working directory)")
	fs.StringVar(&only, "only", "", "comma-separated workloads to run (default all): "+strings.Join(probe.Names(), ","))
	fs.IntVar(&cfg.opts.Runs, "runs", 0, "measured runs of each workload (default: the size's)")
	fs.StringVar(&cfg.opts.Peer, "peer", "", "HOST:PORT of a polyvisor-probe --serve, for net.tcp")
	fs.StringVar(&cfg.serve, "serve", "", "be the net.tcp sink on ADDR (HOST:PORT) instead of measuring")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if only != "" {
		cfg.opts.Only = strings.Split(only, ",")
	}
	if cfg.serve != "" && (cfg.opts.Peer != "" || only != "") {
		return cfg, errors.New("--serve measures nothing: it takes no --peer or --only")
	}
	return cfg, cfg.opts.Check()
}

// run runs the command and returns its exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "polyvisor-probe:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if cfg.serve != "" {
		ln, err := net.Listen("tcp", cfg.serve)
		if err != nil {
			fmt.Fprintln(stderr, "polyvisor-probe:", err)
			return 2
		}
		fmt.Fprintln(stdout, ln.Addr())
		log.Info("serving as the net.tcp sink", "addr", ln.Addr())
		if err := probe.Serve(ctx, ln, log); err != nil {
			fmt.Fprintln(stderr, "polyvisor-probe:", err)
			return 1
		}
		return 0
	}

	cfg.opts.Log = log
	out := probe.Run(ctx, cfg.opts)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(stderr, "polyvisor-probe:", err)
		return 1
	}
	return 0
}
