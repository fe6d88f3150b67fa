package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func (a *app) execCmd() *cobra.Command {
	var env []string
	var cwd string
	var tty, noTTY bool
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run a command in a running guest; its exit code becomes ours",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: polyvisor exec NAME -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			useTTY := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
			if tty {
				useTTY = true
			}
			if noTTY {
				useTTY = false
			}
			req := api.ExecRequest{Command: args[1:], Env: env, Cwd: cwd, TTY: useTTY}
			if useTTY {
				if cols, rows, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
					req.Rows, req.Cols = uint16(rows), uint16(cols)
				}
			}
			c, name, err := a.guest(args[0])
			if err != nil {
				return err
			}
			conn, err := c.Exec(cmd.Context(), name, req)
			if err != nil {
				return err
			}
			defer conn.Close()
			out := stream.NewFrameWriter(conn)
			if useTTY {
				release, err := takeTerminal(out)
				if err != nil {
					return err
				}
				defer release()
			}
			go func() {
				copyInput(out, os.Stdin, nil)
				out.WriteFrame(stream.CloseStdin, nil)
			}()
			return readSession(conn, a.stdout, a.stderr)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&env, "env", nil, "set an environment variable, KEY=VALUE (repeatable)")
	f.StringVar(&cwd, "cwd", "/", "working directory inside the guest")
	f.BoolVarP(&tty, "tty", "t", false, "force a terminal")
	f.BoolVarP(&noTTY, "no-tty", "T", false, "never use a terminal")
	return cmd
}

// readSession prints a session's output until its exit frame and turns
// that into the CLI's exit code.
func readSession(conn io.Reader, stdout, stderr io.Writer) error {
	code, err := stream.CopySession(conn, stdout, stderr)
	if err == nil && code != 0 {
		return &ExitError{Code: code}
	}
	return err
}

// copyInput sends stdin as Stdin frames. With detach, it watches for the
// detach sequence and returns when it is typed.
func copyInput(out *stream.FrameWriter, in io.Reader, detach *detacher) {
	buf := make([]byte, 32*1024)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			data := buf[:n]
			quit := false
			if detach != nil {
				data, quit = detach.filter(data)
			}
			if len(data) > 0 {
				if out.WriteFrame(stream.Stdin, data) != nil {
					return
				}
			}
			if quit {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// takeTerminal puts stdin in raw mode and forwards the terminal's size to
// the session; release undoes both.
func takeTerminal(out *stream.FrameWriter) (release func(), err error) {
	fd := int(os.Stdin.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("terminal raw mode: %w", err)
	}
	stopResize := forwardResize(out)
	return func() {
		stopResize()
		term.Restore(fd, state)
	}, nil
}

// forwardResize sends the terminal size now and on every SIGWINCH.
func forwardResize(out *stream.FrameWriter) (stop func()) {
	send := func() {
		if cols, rows, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			out.WriteFrame(stream.Resize, stream.EncodeResize(uint16(rows), uint16(cols)))
		}
	}
	send()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				send()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(winch); close(done) }
}

// detacher spots Ctrl-a q in the input: Ctrl-a then q detaches, Ctrl-a
// then a sends a literal Ctrl-a, as in screen and `incus console`.
type detacher struct{ armed bool }

const ctrlA = 0x01

func (d *detacher) filter(in []byte) (out []byte, quit bool) {
	var buf bytes.Buffer
	for _, b := range in {
		if d.armed {
			d.armed = false
			switch b {
			case 'q':
				return buf.Bytes(), true
			case 'a':
				buf.WriteByte(ctrlA)
			default:
				buf.WriteByte(ctrlA)
				buf.WriteByte(b)
			}
			continue
		}
		if b == ctrlA {
			d.armed = true
			continue
		}
		buf.WriteByte(b)
	}
	return buf.Bytes(), false
}
