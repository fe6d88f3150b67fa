package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/internal/stream"
)

func (a *app) consoleCmd() *cobra.Command {
	var showLog bool
	cmd := &cobra.Command{
		Use:   "console [REMOTE:]NAME",
		Short: "Attach to a guest's console (Ctrl-a q detaches), or print its saved log",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			if showLog {
				return c.ConsoleLog(cmd.Context(), name, a.stdout)
			}
			conn, err := c.Console(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer conn.Close()
			out := stream.NewFrameWriter(conn)
			if term.IsTerminal(int(os.Stdin.Fd())) {
				release, err := takeTerminal(out)
				if err != nil {
					return err
				}
				defer release()
				fmt.Fprintf(a.stderr, "Attached to %s; Ctrl-a q detaches.\r\n", name)
			}
			detached := make(chan struct{})
			go func() {
				copyInput(out, os.Stdin, &detacher{})
				close(detached)
			}()
			ended := make(chan error, 1)
			go func() {
				for {
					f, err := stream.ReadFrame(conn)
					if err != nil {
						ended <- nil
						return
					}
					switch f.Type {
					case stream.Stdout:
						a.stdout.Write(f.Data)
					case stream.Exit: // the guest's init ended
						code, _ := stream.DecodeExit(f.Data)
						fmt.Fprintf(a.stderr, "\r\nGuest %s stopped (init exit code %d).\r\n", name, code)
						ended <- nil
						return
					}
				}
			}()
			select {
			case <-detached:
			case err := <-ended:
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&showLog, "log", false, "print the saved console log instead of attaching")
	return cmd
}
