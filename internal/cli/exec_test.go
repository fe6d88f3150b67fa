package cli

import (
	"bytes"
	"errors"
	"testing"

	"github.com/polyvisor/polyvisor/internal/stream"
)

func TestDetacherSpotsCtrlAQ(t *testing.T) {
	d := &detacher{}
	out, quit := d.filter([]byte("ls\x01"))
	if string(out) != "ls" || quit {
		t.Fatalf("first chunk: %q %v", out, quit)
	}
	// The sequence may straddle two reads.
	if out, quit = d.filter([]byte("q")); len(out) != 0 || !quit {
		t.Fatalf("Ctrl-a then q: %q %v", out, quit)
	}
	if out, quit = (&detacher{}).filter([]byte("a\x01ab\x01xc")); string(out) != "a\x01b\x01xc" || quit {
		t.Fatalf("Ctrl-a a and Ctrl-a x: %q %v", out, quit)
	}
}

func TestReadSessionPassesStreamsAndExitCode(t *testing.T) {
	var wire bytes.Buffer
	stream.WriteFrame(&wire, stream.Stdout, []byte("out"))
	stream.WriteFrame(&wire, stream.Stderr, []byte("err"))
	stream.WriteFrame(&wire, stream.Exit, stream.EncodeExit(3))
	var stdout, stderr bytes.Buffer
	err := readSession(&wire, &stdout, &stderr)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || stdout.String() != "out" || stderr.String() != "err" {
		t.Errorf("err %v stdout %q stderr %q", err, stdout.String(), stderr.String())
	}
	wire.Reset()
	stream.WriteFrame(&wire, stream.Error, []byte("guest web: not running"))
	if err := readSession(&wire, &stdout, &stderr); err == nil || err.Error() != "guest web: not running" {
		t.Errorf("error frame: %v", err)
	}
	if err := readSession(&bytes.Buffer{}, &stdout, &stderr); err == nil {
		t.Error("a session cut short passed for a success")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512B", 64 << 20: "64MiB", 3 << 29: "1.5GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
