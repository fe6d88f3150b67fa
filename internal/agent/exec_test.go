package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHandshakeReportsGuestInfo(t *testing.T) {
	c := dial(t, newGuest(t))
	var u unix.Utsname
	unix.Uname(&u)
	host, _ := os.Hostname()
	// The stand-in port is a pty, a serial line to the agent: it paces.
	want := GuestInfo{Version: Version, Arch: unix.ByteSliceToString(u.Machine[:]), Hostname: host, LinkAcks: true}
	if got := c.Info(); got != want {
		t.Fatalf("info %+v, want %+v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestExecSeparatesStreamsAndReturnsExitCode(t *testing.T) {
	c := dial(t, newGuest(t))
	got := execute(t, c, ExecRequest{Command: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, "")
	if got != (result{"out\n", "err\n", 3}) {
		t.Fatalf("got %+v", got)
	}
}

func TestExecEnvironmentAndDirectory(t *testing.T) {
	c := dial(t, newGuest(t))
	dir := t.TempDir()
	got := execute(t, c, ExecRequest{
		Command: []string{"sh", "-c", `echo "$PATH|$FOO|$(pwd)"`},
		Env:     []string{"FOO=bar", "FOO=baz"},
		Cwd:     dir,
	}, "")
	want := defaultPath + "|baz|" + dir + "\n"
	if got.stdout != want || got.code != 0 {
		t.Fatalf("got %+v, want stdout %q", got, want)
	}
}

func TestExecPipesStdinBeyondTheWindow(t *testing.T) {
	c := dial(t, newGuest(t))
	// Several windows' worth, both ways, with every byte value.
	in := make([]byte, 4*window+12345)
	rand.Read(in)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	code, err := c.Exec(ctx, ExecRequest{Command: []string{"cat"}}, bytes.NewReader(in), &out, nil, nil)
	if err != nil || code != 0 {
		t.Fatalf("cat: code %d, %v", code, err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Fatalf("cat returned %d bytes that differ from the %d sent", out.Len(), len(in))
	}
}

func TestExecInputMayHoldHellos(t *testing.T) {
	c := dial(t, newGuest(t))
	// Input full of what the agent would take for a new host's Hello,
	// at every offset a frame boundary could fall on.
	hello := encodeFrame(typeHello, 0, encodeHello(nonce{3}))
	var in []byte
	for i := range 300 {
		in = append(in, bytes.Repeat([]byte{'x'}, i)...)
		in = append(in, hello...)
	}
	got := execute(t, c, ExecRequest{Command: []string{"cat"}}, string(in))
	if got.code != 0 || got.stdout != string(in) {
		t.Fatalf("cat: code %d, %d bytes back of %d", got.code, len(got.stdout), len(in))
	}
	if got := execute(t, c, ExecRequest{Command: []string{"true"}}, ""); got.code != 0 {
		t.Fatalf("the connection did not survive: %+v", got)
	}
}

func TestExecWithoutStdinGetsEOF(t *testing.T) {
	c := dial(t, newGuest(t))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out bytes.Buffer
	code, err := c.Exec(ctx, ExecRequest{Command: []string{"sh", "-c", "cat; echo done"}}, nil, &out, nil, nil)
	if err != nil || code != 0 || out.String() != "done\n" {
		t.Fatalf("code %d, %v, output %q", code, err, out.String())
	}
}

func TestExecReportsSignals(t *testing.T) {
	c := dial(t, newGuest(t))
	got := execute(t, c, ExecRequest{Command: []string{"sh", "-c", "kill -9 $$"}}, "")
	if got.code != 128+9 {
		t.Fatalf("got %+v, want code 137", got)
	}
}

func TestExecOfMissingCommand(t *testing.T) {
	c := dial(t, newGuest(t))
	got := execute(t, c, ExecRequest{Command: []string{"no-such-command-polyvisor"}}, "")
	if got.code != 127 || !strings.Contains(got.stderr, "no-such-command-polyvisor: command not found") {
		t.Fatalf("got %+v, want 127 and a message", got)
	}
	got = execute(t, c, ExecRequest{Command: []string{"/no/such/program"}}, "")
	if got.code != 127 || !strings.Contains(got.stderr, "command not found") {
		t.Fatalf("got %+v, want 127 and a message", got)
	}
	got = execute(t, c, ExecRequest{Command: []string{"true"}, Cwd: "/no/such/dir"}, "")
	if got.code != 126 || !strings.Contains(got.stderr, "working directory") {
		t.Fatalf("got %+v, want 126 and a message", got)
	}
	notExecutable := t.TempDir() + "/script"
	os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644)
	got = execute(t, c, ExecRequest{Command: []string{notExecutable}}, "")
	if got.code != 126 || !strings.Contains(got.stderr, "permission denied") {
		t.Fatalf("got %+v, want 126 and a message", got)
	}
	// The connection is still good.
	if got := execute(t, c, ExecRequest{Command: []string{"true"}}, ""); got.code != 0 {
		t.Fatalf("true after failures: %+v", got)
	}
}

func TestExecRefusesEmptyCommand(t *testing.T) {
	c := dial(t, newGuest(t))
	if _, err := c.Exec(context.Background(), ExecRequest{}, nil, nil, nil, nil); err == nil {
		t.Fatal("empty command accepted")
	}
}

func TestExecCancelKillsTheCommand(t *testing.T) {
	c := dial(t, newGuest(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, ExecRequest{Command: []string{"sh", "-c", "echo $$; exec sleep 60"}}, nil, &out, nil, nil)
		errc <- err
	}()
	pid := waitForPid(t, &out)
	cancel()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("exec returned %v, want the context's error", err)
	}
	waitFor(t, "the cancelled command to die", func() bool { return !alive(pid) })
}

func TestConcurrentExecs(t *testing.T) {
	c := dial(t, newGuest(t))
	const n = 4
	type outcome struct {
		i   int
		out string
		err error
	}
	outcomes := make(chan outcome, n)
	for i := range n {
		go func() {
			// Each session streams more than a window while the others do.
			in := strings.Repeat(string(rune('a'+i)), 2*window+i)
			req := ExecRequest{Command: []string{"sh", "-c", "sleep 0.2; cat"}}
			if i == n-1 {
				in, req = "", ExecRequest{Command: []string{"sh", "-c", "sleep 0.2; tty"}, TTY: true}
			}
			var out bytes.Buffer
			_, err := c.Exec(context.Background(), req, strings.NewReader(in), &out, nil, nil)
			if i == n-1 && strings.HasPrefix(out.String(), "/dev/pts/") {
				out.Reset()
			}
			outcomes <- outcome{i, out.String(), err}
		}()
	}
	for range n {
		o := <-outcomes
		want := strings.Repeat(string(rune('a'+o.i)), 2*window+o.i)
		if o.i == n-1 {
			want = ""
		}
		if o.err != nil || o.out != want {
			t.Errorf("exec %d: %v, output %.40q (%d bytes), want %d bytes", o.i, o.err, o.out, len(o.out), len(want))
		}
	}
}

// waitForPid returns the pid a command printed first.
func waitForPid(t *testing.T, out *syncBuffer) int {
	t.Helper()
	var pid int
	waitFor(t, "the command's pid", func() bool {
		line, _, ok := strings.Cut(out.String(), "\n")
		if !ok {
			return false
		}
		_, err := fmt.Sscan(line, &pid)
		return err == nil
	})
	return pid
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
