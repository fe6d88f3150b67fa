package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/spf13/cobra"
)

func (a *app) hostCmd() *cobra.Command {
	host := &cobra.Command{Use: "host", Short: "What this host can run, and the vSphere and libvirt hosts managed beside it"}
	var format string
	var requirementsOnly bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Canary-test each guest class, list missing host packages, and say why a class does not work",
		Long: `Canary-test each guest class on the daemon's host and say why one does not
work, then name every program, file or directory polyvisor needs from the host
that is missing, the feature it disables and the apt-get line that installs it.

With --requirements, check only the host requirements, here and without a
daemon, listing each one; the exit code is non-zero when one make deps would
install is missing.`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			if requirementsOnly {
				return a.checkRequirements(format)
			}
			check, err := a.client().HostCheck(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printStructured(a.stdout, "json", check)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLASS\tWORKS\tTOOK\tWHY")
			for _, v := range check.Classes {
				works := "no"
				if v.Works {
					works = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Class, works, v.Duration, v.Reason)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			if err := printCapabilities(a.stdout, check.Classes); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			printMissing(a.stdout, check)
			return nil
		},
	}
	check.Flags().StringVar(&format, "format", "table", "output: table or json")
	check.Flags().BoolVar(&requirementsOnly, "requirements", false, "check the host requirements only, locally, without a daemon")
	host.AddCommand(check)
	host.AddCommand(a.vendorHostCmds()...)
	return host
}

// checkRequirements lists every host requirement and its state, and fails
// when one make deps installs is missing.
func (a *app) checkRequirements(format string) error {
	check := api.NewHostRequirements()
	missing := hostreq.Missing(check.Requirements)
	if format == "json" {
		if err := printStructured(a.stdout, "json", check); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUIREMENT\tKIND\tPACKAGE\tUSE\tSTATE\tFEATURE")
		for _, s := range check.Requirements {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, orDash(s.Package), s.Use, requirementState(s), s.Feature)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("host requirements missing: %s: %s (make deps does)", requirementNames(missing), check.InstallLine)
	}
	return nil
}

// printCapabilities lists what each class's driver declares it can do.
func printCapabilities(w io.Writer, classes []api.ClassVerdict) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tARCHES\tEXPORTS\tCAN")
	for _, v := range classes {
		c := v.Capabilities
		if c == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Class, orDash(strings.Join(c.Arches, ",")), orDash(strings.Join(c.ExportFormats, ",")), orDash(strings.Join(abilities(*c), ", ")))
	}
	return tw.Flush()
}

// abilities names what c declares, in the order a user meets them.
func abilities(c api.Capabilities) []string {
	var out []string
	for _, a := range []struct {
		name string
		has  bool
	}{
		{"exec", c.Exec}, {"console", c.Console}, {"networks", c.Networks}, {"live limits", c.LiveLimits},
		{"disk resize", c.DiskResize}, {"disk usage", c.DiskUsage}, {"snapshots", c.Snapshots},
		{"copy", c.Copy}, {"copy running", c.CopyRunning}, {"export", c.Export}, {"tree read", c.TreeRead},
		{"privileged", c.Privileged}, {"copy rootfs", c.CopyRootfs},
	} {
		if a.has {
			out = append(out, a.name)
		}
	}
	return out
}

// printMissing says which host requirements are missing, what each
// disables and what installs them, or that none is.
func printMissing(w io.Writer, check api.HostCheck) {
	missing := hostreq.Missing(check.Requirements)
	if len(missing) == 0 {
		fmt.Fprintf(w, "Host requirements: all that make deps installs are present (%d packages).\n", len(hostreq.Packages()))
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MISSING\tPACKAGE\tDISABLES")
		for _, s := range missing {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Package, s.Feature)
		}
		tw.Flush()
		fmt.Fprintf(w, "Fix: %s (or make deps)\n", check.InstallLine)
	}
}

func requirementState(s hostreq.Status) string {
	switch {
	case s.Present:
		return "present"
	case s.Installed():
		return "MISSING"
	}
	return "absent (" + string(s.Use) + ", optional)"
}

func requirementNames(statuses []hostreq.Status) string {
	names := make([]string, len(statuses))
	for i, s := range statuses {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
