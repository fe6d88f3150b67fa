package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

func (a *app) importCmd() *cobra.Command {
	var req api.Import
	var format string
	cmd := &cobra.Command{
		Use:   "import FILE [[REMOTE:|HOST:]NAME]",
		Short: "Import a disk image (qcow2, raw, VMDK, VDI, VHD, VHDX), an appliance (OVA, OVF), a definition (.vmx, .vbox, libvirt XML, xl.cfg) or a container image (OCI layout, docker save, rootfs tarball)",
		Long: `Import tells FILE's format by its content, never its name, and makes a
template of it; with --as guest (the default) also a guest on that template,
with the CPUs, memory, NICs (each with its MAC) and firmware its definition
states. Whatever the source defines that polyvisor cannot carry over is printed
as a warning line, whether the import succeeds or fails. The definition's boot
disk must be an image file: a host device or network disk is refused, with
the qemu-img command that copies it into a file; --disk N boots its Nth disk
instead.
Imported VM disks boot by their own firmware on q35 (BIOS unless the
definition or --firmware says UEFI). A failed import leaves nothing behind. FILE is read by the daemon on its
own host; for a remote daemon (REMOTE:NAME, --remote) the CLI sends it
(one file: a disk image, an OVA, a tarball; a definition with its disks
beside it is imported on the server). An OVA imported as HOST:NAME is
deployed to that vSphere host (see host add) as a new VM.`,
		Args: rangeArgs(1, 2, "FILE [NAME]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			if err := checkCounts(cmd, req.CPUs, 0); err != nil {
				return err
			}
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			req.Path = path
			c := a.client()
			if len(args) == 2 {
				if c, req.Name, err = a.guest(args[1]); err != nil {
					return err
				}
			}
			if host, name, ok := strings.Cut(req.Name, ":"); ok {
				return a.importToHost(cmd.Context(), c, host, name, path)
			}
			var op api.Operation
			if c.Remote() {
				// A remote daemon cannot read this machine's file: it is sent.
				op, err = a.upload(cmd.Context(), c, path, req, format)
			} else {
				op, err = c.Import(cmd.Context(), req)
			}
			if err != nil {
				return err
			}
			op, err = c.WaitResult(cmd.Context(), op, a.progress(format, "import "+filepath.Base(path)))
			printWarnings(op)
			if err != nil {
				return err
			}
			if format == "json" {
				if req.As == api.ImportAsTemplate {
					t, err := c.Template(cmd.Context(), op.Result)
					if err != nil {
						return err
					}
					return printStructured(a.stdout, "json", t)
				}
				g, err := c.Guest(cmd.Context(), op.Result)
				if err != nil {
					return err
				}
				return printStructured(a.stdout, "json", g)
			}
			if req.As == api.ImportAsTemplate {
				fmt.Fprintf(a.stdout, "Template %s imported from %s\n", op.Result, filepath.Base(path))
			} else {
				fmt.Fprintf(a.stdout, "Guest %s imported from %s\n", op.Result, filepath.Base(path))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.As, "as", api.ImportAsGuest, "guest (a template and a guest on it) or template")
	f.StringVar(&req.Firmware, "firmware", "", "how the disk boots: bios or uefi (default: what the definition says, else bios)")
	f.IntVar(&req.Disk, "disk", 0, "which of the definition's disks boots, counted from 1 (default: its boot disk)")
	f.IntVar(&req.CPUs, "cpus", 0, "CPUs (default: what the definition states, else 1)")
	f.StringVar(&req.Memory, "memory", "", "memory, like 1GiB (default: what the definition states, else 256MiB)")
	f.StringArrayVar(&req.Networks, "network", nil, "networks of the definition's NICs in order, as A,B,C or one --network per NIC; NICs past the list join the last (default: all on polyvisor0; none for no network). Each NIC keeps its MAC")
	f.BoolVar(&req.Start, "start", false, "start the guest once imported")
	f.StringVar(&format, "format", "text", "output: text or json")
	return cmd
}

func (a *app) exportCmd() *cobra.Command {
	var req api.Export
	cmd := &cobra.Command{
		Use:   "export [REMOTE:]NAME FILE --format ova|qcow2|vmdk|vhdx|tar",
		Short: "Write a stopped guest out: a VM as an OVF appliance or a disk image, a container as a rootfs tarball (FILE on the daemon's host)",
		Args:  exactArgs(2, "NAME FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[1])
			if err != nil {
				return err
			}
			req.Path = path
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			op, err := c.Export(cmd.Context(), name, req)
			if err != nil {
				return err
			}
			op, err = c.WaitResult(cmd.Context(), op, a.progress("text", "export "+args[0]))
			printWarnings(op)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Guest %s exported to %s (%s)\n", args[0], path, req.Format)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Format, "format", "", "ova, qcow2, vmdk or vhdx for a VM; tar for a container")
	cmd.MarkFlagRequired("format")
	return cmd
}

// printWarnings prints an operation's warnings on stderr, a line each.
func printWarnings(op api.Operation) {
	for _, w := range op.Warnings {
		fmt.Fprintf(os.Stderr, "Warning: %s\n", w)
	}
}

// upload sends a local file to a remote daemon to import, with a progress
// bar on a terminal.
func (a *app) upload(ctx context.Context, c *client.Client, path string, req api.Import, format string) (api.Operation, error) {
	f, err := os.Open(path)
	if err != nil {
		return api.Operation{}, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return api.Operation{}, fmt.Errorf("import: %w", err)
	}
	if !st.Mode().IsRegular() {
		return api.Operation{}, fmt.Errorf("import %s: to a remote daemon only a file can be sent (a disk image, an OVA, a tarball); import a directory on the server", path)
	}
	var body io.Reader = f
	if format != "json" && term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.DefaultBytes(st.Size(), "upload "+filepath.Base(path))
		defer bar.Finish()
		body = io.TeeReader(f, bar)
	}
	return c.ImportUpload(ctx, filepath.Base(path), body, st.Size(), req)
}
