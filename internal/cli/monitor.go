package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func (a *app) monitorCmd() *cobra.Command {
	var types []string
	var format string
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Print the daemon's events as they happen: guests created, started, stopped, deleted; operations and their progress",
		Long: `Print the daemon's events as they happen, one line each, until interrupted.
Lifecycle events say that a guest was created, started, stopped (asked to, or
ended on its own) or deleted; operation events that an operation began, how
far it got, and how it ended. --format json prints each event as one line of
JSON, as the API sends it (GET /1.0/events).`,
		Example: `  polyvisor monitor
  polyvisor monitor --type lifecycle
  polyvisor monitor --type operation --format json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			for _, t := range types {
				if !slices.Contains(api.EventTypes, t) {
					return fmt.Errorf("--type %q: use lifecycle, operation, or both (lifecycle,operation)", t)
				}
			}
			ctx := cmd.Context()
			stream, err := a.client().Events(ctx, types...)
			if err != nil {
				return err
			}
			defer stream.Close()
			for {
				e, err := stream.Next(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return nil // interrupted: the usual end
					}
					return err
				}
				if err := printEvent(a.stdout, format, e); err != nil {
					return err
				}
			}
		},
	}
	cmd.Flags().StringSliceVar(&types, "type", nil, "event types to print: lifecycle, operation (default both)")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

// printEvent writes one event as a line.
func printEvent(w io.Writer, format string, e api.Event) error {
	if format == "json" {
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	when := e.Time.Local().Format(time.RFC3339Nano)
	switch {
	case e.Type == api.EventLifecycle:
		_, err := fmt.Fprintf(w, "%s %s %s %s\n", when, e.Type, e.Action, e.Guest)
		return err
	case e.Operation != nil:
		op := e.Operation
		line := []string{when, e.Type, op.Kind, op.Resource, e.Action}
		if p := op.Progress; e.Action == api.OpRunning && p.Phase != "" {
			line = append(line, p.Phase)
			if p.Total > 0 {
				line = append(line, fmt.Sprintf("%d%%", p.Done*100/p.Total))
			}
		}
		if op.Error != "" {
			line = append(line, "error: "+op.Error)
		}
		_, err := fmt.Fprintln(w, strings.Join(line, " "))
		return err
	default:
		_, err := fmt.Fprintf(w, "%s %s %s\n", when, e.Type, e.Action)
		return err
	}
}
