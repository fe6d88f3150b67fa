package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/evaluate"
	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/layout"
)

func (a *app) benchCmd() *cobra.Command {
	var classes, out, format, size, peers string
	var quick, network bool
	cmd := &cobra.Command{
		Use:   "bench [--classes container,chroot,vm,uml,emulation,bochs,...] [--peers all|none|LIST] [--quick|--size SIZE] [--network] [--out DIR] [--format table|json]",
		Short: "Measure every class on this host: the probe natively and in a fresh guest of each class, lifecycle and density",
		Long: `bench runs polyvisor-probe (CPU, memory, system calls, process creation,
O_DIRECT disk I/O) natively on the host, then inside a fresh busybox guest
of each class, and times each class's lifecycle (provision, boot, stop,
delete) and density (idle guests per memory budget). Every figure is a median
of repeated runs with its spread, and a ratio to native from the same run.
It writes report.json and a self-contained report.html (charts, and the
chapter's claims checked against the numbers) to --out, by default a new
directory under the daemon's state directory, and prints the table.`,
		// bench runs itself and has subcommands: an argument that names no
		// subcommand reaches here, and is refused with what bench takes.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%s takes no arguments, got %q: to set two reports side by side use %s compare A B", cmd.CommandPath(), args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			if quick {
				size = probe.SizeQuick
			}
			if !cmd.Flags().Changed("network") {
				// Two guests of each class and their network cost a
				// minute or two: a quick run leaves them out.
				network = size != probe.SizeQuick
			}
			c := a.client()
			if out == "" {
				info, err := c.Server(cmd.Context())
				if err != nil {
					return err
				}
				out = filepath.Join(layout.New(info.StateDir).BenchDir(), time.Now().UTC().Format("20060102-150405"))
			}
			probeDir, err := executableDir()
			if err != nil {
				return err
			}
			peerList := evaluate.DefaultPeers()
			switch peers {
			case "":
			case "none":
				peerList = nil
			case "all":
				peerList = peer.Names
			default:
				peerList = strings.Split(peers, ",")
			}
			report, err := evaluate.Run(cmd.Context(), evaluate.Options{
				Client: c, ProbeDir: probeDir, Size: size, Classes: strings.Split(classes, ","), Peers: peerList, Network: network,
				Command: "polyvisor " + strings.Join(os.Args[1:], " "), Progress: a.phaseProgress(format),
			})
			if report == nil {
				return err
			}
			if werr := writeReport(out, report); werr != nil {
				return werr
			}
			// The report stands even when its peers' cleanup failed (err):
			// show it, then say what is left.
			if format == "json" {
				if werr := benchreport.WriteJSON(a.stdout, report); werr != nil {
					return werr
				}
				return err
			}
			if werr := benchreport.WriteTable(a.stdout, report); werr != nil {
				return werr
			}
			fmt.Fprintf(a.stdout, "\nReport: %s (and report.json)\n", filepath.Join(out, "report.html"))
			return err
		},
	}
	cmd.AddCommand(a.benchCompareCmd())
	f := cmd.Flags()
	f.StringVar(&classes, "classes", strings.Join(evaluate.DefaultClasses, ","), "classes to measure beside native, among "+strings.Join(evaluate.Classes, ", "))
	f.BoolVar(&network, "network", false, "measure TCP throughput over a bare veth pair, between two guests of each class and host to guest, on an isolated network bench makes and removes (default: on, off with --quick)")
	f.BoolVar(&quick, "quick", false, "small workloads and few runs (same as --size quick)")
	f.StringVar(&size, "size", probe.SizeDefault, "workload size: quick, default or thorough")
	f.StringVar(&out, "out", "", "directory for report.json and report.html (default: a new one under STATE/bench)")
	f.StringVar(&format, "format", "table", "output: table or json")
	f.StringVar(&peers, "peers", "", "peers to measure the same way: "+strings.Join(peer.Names, ", ")+", all or none (default: runc,qemu where installed)")
	return cmd
}

func (a *app) adviseCmd() *cobra.Command {
	var needs benchreport.Needs
	var reportPath, format string
	cmd := &cobra.Command{
		Use:   "advise [--guest-os linux|windows|other] [--arch ARCH] [--priority density|disk|cpu|isolation|boot] [--count N] [--report FILE] [--format table|json]",
		Short: "Recommend a class for stated needs, from the last bench of this host (a quick one when there is none)",
		Args:  exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			var report *benchreport.Report
			if reportPath != "" {
				// A report named on the command line needs no daemon.
				var err error
				if _, report, err = readReport(reportPath); err != nil {
					return err
				}
			} else {
				var err error
				if report, err = a.lastOrQuickReport(cmd, format); err != nil {
					return err
				}
			}
			advice, err := benchreport.Advise(report, needs)
			if err != nil {
				return err
			}
			if format == "json" {
				return printStructured(a.stdout, "json", advice)
			}
			return benchreport.WriteAdvice(a.stdout, advice)
		},
	}
	f := cmd.Flags()
	f.StringVar(&needs.GuestOS, "guest-os", "linux", "the guests' OS: linux, windows or other")
	f.StringVar(&needs.Arch, "arch", "", "the guests' architecture (default: the host's)")
	f.StringVar(&needs.Priority, "priority", "cpu", "what matters most: density, disk, cpu, isolation or boot")
	f.IntVar(&needs.Count, "count", 1, "how many such guests")
	f.StringVar(&reportPath, "report", "", "a report.json (or its directory) to advise from (default: the last bench of this host)")
	f.StringVar(&format, "format", "table", "output: table or json")
	return cmd
}

// lastOrQuickReport is the last bench report in the daemon's state
// directory, or, when there is none, a quick bench run now and saved there.
func (a *app) lastOrQuickReport(cmd *cobra.Command, format string) (*benchreport.Report, error) {
	c := a.client()
	info, err := c.Server(cmd.Context())
	if err != nil {
		return nil, err
	}
	if last := benchreport.Last(layout.New(info.StateDir).BenchDir()); last != "" {
		_, report, err := readReport(last)
		return report, err
	}
	fmt.Fprintln(os.Stderr, "No bench report on this host yet: running polyvisor bench --quick first.")
	probeDir, err := executableDir()
	if err != nil {
		return nil, err
	}
	report, err := evaluate.Run(cmd.Context(), evaluate.Options{
		Client: c, ProbeDir: probeDir, Size: probe.SizeQuick, Classes: evaluate.DefaultClasses,
		Command: "polyvisor advise (quick bench)", Progress: a.phaseProgress(format),
	})
	if err != nil {
		return nil, err
	}
	if err := writeReport(filepath.Join(layout.New(info.StateDir).BenchDir(), time.Now().UTC().Format("20060102-150405")), report); err != nil {
		return nil, err
	}
	return report, nil
}

// writeReport writes report.json and report.html into dir.
func writeReport(dir string, r *benchreport.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, write := range map[string]func(*os.File) error{
		"report.json": func(f *os.File) error { return benchreport.WriteJSON(f, r) },
		"report.html": func(f *os.File) error { return benchreport.WriteHTML(f, r) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := write(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// executableDir is where the CLI's binary is: the probes lie beside it.
func executableDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Dir(exe), nil
}

// phaseProgress shows the phase bench is in, on a terminal.
func (a *app) phaseProgress(format string) func(string) {
	if format == "json" || !term.IsTerminal(int(os.Stderr.Fd())) {
		return func(phase string) { fmt.Fprintf(os.Stderr, "bench: %s\n", phase) }
	}
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSpinnerType(14), progressbar.OptionClearOnFinish())
	return func(phase string) {
		bar.Describe("bench: " + phase)
		bar.Add(1)
	}
}
