package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) snapshotCmd() *cobra.Command {
	snap := &cobra.Command{Use: "snapshot", Short: "Take, list, restore and delete snapshots of a guest's disks"}
	create := &cobra.Command{
		Use:   "create NAME SNAP",
		Short: "Snapshot a guest's disks, running (paused or frozen for the moment) or stopped",
		Args:  exactArgs(2, "NAME SNAP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			op, err := c.CreateSnapshot(cmd.Context(), name, args[1])
			if err == nil {
				err = c.Wait(cmd.Context(), op, a.progress("text", "snapshot "+name))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Snapshot %s of %s taken\n", args[1], args[0])
			return nil
		},
	}
	var format string
	list := &cobra.Command{
		Use:     "list NAME",
		Aliases: []string{"ls"},
		Short:   "List a guest's snapshots, oldest first",
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, formats...); err != nil {
				return err
			}
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			snaps, err := c.Snapshots(cmd.Context(), name)
			if err != nil {
				return err
			}
			if format != "table" {
				return printStructured(a.stdout, format, snaps)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tSIZE\tKIND\tTAKEN")
			for _, s := range snaps {
				size, taken := "-", "stopped"
				if s.Size > 0 {
					size = humanBytes(s.Size)
				}
				if s.Running {
					taken = "running"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.CreatedAt.Local().Format("2006-01-02 15:04:05"), size, s.Kind, taken)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&format, "format", "table", "output: table, json or yaml")
	restore := &cobra.Command{
		Use:   "restore NAME SNAP",
		Short: "Put a stopped guest's disks back to a snapshot (a running guest is refused: stop it first)",
		Args:  exactArgs(2, "NAME SNAP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			op, err := c.RestoreSnapshot(cmd.Context(), name, args[1])
			if err == nil {
				err = c.Wait(cmd.Context(), op, a.progress("text", "restore "+name))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Guest %s restored to snapshot %s\n", args[0], args[1])
			return nil
		},
	}
	del := &cobra.Command{
		Use:     "delete NAME SNAP",
		Aliases: []string{"rm"},
		Short:   "Delete a snapshot, running or stopped",
		Args:    exactArgs(2, "NAME SNAP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			op, err := c.DeleteSnapshot(cmd.Context(), name, args[1])
			if err == nil {
				err = c.Wait(cmd.Context(), op, a.progress("text", "delete snapshot "+args[1]))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Snapshot %s of %s deleted\n", args[1], args[0])
			return nil
		},
	}
	snap.AddCommand(create, list, restore, del)
	return snap
}

func (a *app) copyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy a guest to a new, stopped one with its own name, MACs and address (a VM must be stopped; a container is frozen meanwhile)",
		Args:  exactArgs(2, "SRC DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, src, dst, err := a.guestPair(args[0], args[1])
			if err != nil {
				return err
			}
			g, err := c.Guest(cmd.Context(), src)
			if err != nil {
				return err
			}
			op, err := c.CopyGuest(cmd.Context(), src, dst)
			if err == nil {
				err = c.Wait(cmd.Context(), op, a.progress("text", "copy "+src))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Guest %s copied from %s; start it with 'polyvisor start %s'\n", dst, src, dst)
			if len(g.Publish) > 0 {
				fmt.Fprintf(a.stderr, "Note: %s's published ports (%s) were not copied, as they would conflict; give %s its own with 'polyvisor config set %s publish=...'\n",
					src, strings.Join(g.Publish, ","), dst, dst)
			}
			return nil
		},
	}
}
