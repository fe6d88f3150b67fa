package agent

import (
	"context"
	"strings"
	"testing"
)

func TestTTYExecRunsOnAPseudoTerminal(t *testing.T) {
	c := dial(t, newGuest(t))
	got := execute(t, c, ExecRequest{Command: []string{"tty"}, TTY: true}, "")
	if got.code != 0 || !strings.HasPrefix(got.stdout, "/dev/pts/") {
		t.Fatalf("tty: %+v", got)
	}
	got = execute(t, c, ExecRequest{Command: []string{"stty", "size"}, TTY: true, Rows: 40, Cols: 100}, "")
	if got.code != 0 || got.stdout != "40 100\r\n" {
		t.Fatalf("stty size: %+v", got)
	}
	got = execute(t, c, ExecRequest{Command: []string{"sh", "-c", "echo $TERM; echo err >&2; exit 5"}, TTY: true}, "")
	if got.code != 5 || got.stdout != "xterm\r\nerr\r\n" || got.stderr != "" {
		t.Fatalf("tty exit code and merged output: %+v", got)
	}
}

func TestTTYEndOfInputInLineMode(t *testing.T) {
	c := dial(t, newGuest(t))
	// The terminal echoes the line, cat prints it, and CloseStdin's ^D
	// ends cat's input.
	got := execute(t, c, ExecRequest{Command: []string{"cat"}, TTY: true}, "hello\n")
	if got.code != 0 || got.stdout != "hello\r\nhello\r\n" {
		t.Fatalf("cat on a tty: %+v", got)
	}
}

func TestTTYResize(t *testing.T) {
	c := dial(t, newGuest(t))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	script := `stty size; while [ "$(stty size)" = "40 100" ]; do sleep 0.02; done; stty size`
	resize := make(chan [2]uint16)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, ExecRequest{Command: []string{"sh", "-c", script}, TTY: true, Rows: 40, Cols: 100}, nil, &out, nil, resize)
		done <- err
	}()
	waitFor(t, "the first size", func() bool { return strings.Contains(out.String(), "40 100") })
	resize <- [2]uint16{50, 120}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "40 100\r\n50 120\r\n" {
		t.Fatalf("output %q", got)
	}
}
