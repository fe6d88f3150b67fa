package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func (a *app) templateCmd() *cobra.Command {
	tmpl := &cobra.Command{Use: "template", Short: "Build and manage the base images guests are cloned from"}

	var build api.TemplateBuild
	var buildFormat string
	buildCmd := &cobra.Command{
		Use:   "build busybox|debian[:SUITE] [--type vm] [--arch ARCH] [--firmware bios|uefi]",
		Short: "Build a container or VM template from busybox-static or a Debian mirror",
		Args:  exactArgs(1, "a source: busybox or debian[:SUITE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(buildFormat, "text", "json"); err != nil {
				return err
			}
			build.Source = args[0]
			c := a.client()
			op, err := c.BuildTemplate(cmd.Context(), build)
			if err != nil {
				return err
			}
			if err := c.Wait(cmd.Context(), op, a.progress(buildFormat, "build "+op.Resource)); err != nil {
				return err
			}
			t, err := c.Template(cmd.Context(), op.Resource)
			if err != nil {
				return err
			}
			if buildFormat == "json" {
				return printStructured(a.stdout, "json", t)
			}
			fmt.Fprintf(a.stdout, "Template %s built: %s, %s\n", t.ID, humanBytes(t.Size), t.Digest)
			return nil
		},
	}
	buildCmd.Flags().StringVar(&build.Name, "name", "", "template name (default: the source, ':' as '-')")
	buildCmd.Flags().StringVar(&build.Arch, "arch", "", "architecture: amd64/x86_64, arm64/aarch64, riscv64, ppc64el/ppc64le, s390x, armhf/arm (default: the host's; VM templates only for others)")
	buildCmd.Flags().StringVar(&build.Type, "type", "container", "container, or vm for a kernel, initrd and root disk booted by QEMU")
	buildCmd.Flags().StringVar(&build.Firmware, "firmware", "", "VM templates: bios or uefi, for a partitioned disk with GRUB that boots by itself on q35 (default: direct kernel boot on microvm/virt, faster)")
	buildCmd.Flags().StringVar(&buildFormat, "format", "text", "output: text or json")

	var listFormat string
	listCmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List templates",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(listFormat, formats...); err != nil {
				return err
			}
			ts, err := a.client().Templates(cmd.Context())
			if err != nil {
				return err
			}
			if listFormat != "table" {
				return printStructured(a.stdout, listFormat, ts)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSOURCE\tARCH\tSIZE\tUSED BY\tDIGEST")
			for _, t := range ts {
				src := t.Source
				if t.Suite != "" {
					src += ":" + t.Suite
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.ID, t.Type, src, t.Arch, humanBytes(t.Size), len(t.UsedBy), shortDigest(t.Digest))
			}
			return tw.Flush()
		},
	}
	listCmd.Flags().StringVar(&listFormat, "format", "table", "output: table, json or yaml")

	var showFormat string
	showCmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a template (its ID as template list prints it)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(showFormat, "yaml", "json"); err != nil {
				return err
			}
			t, err := a.client().Template(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printStructured(a.stdout, showFormat, t)
		},
	}
	showCmd.Flags().StringVar(&showFormat, "format", "yaml", "output: yaml or json")

	deleteCmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete templates no guest uses",
		Args:  minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := a.client().DeleteTemplate(cmd.Context(), name); err != nil {
					return err
				}
			}
			return nil
		},
	}
	tmpl.AddCommand(buildCmd, listCmd, showCmd, deleteCmd)
	return tmpl
}

func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) < 12 {
		return d
	}
	return algo + ":" + hex[:12]
}
