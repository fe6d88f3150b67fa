package runcmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunPassesStreamsAndReportsStderr(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "cat; echo done"}, Stdin: strings.NewReader("in\n"), Stdout: &out})
	if err != nil || out.String() != "in\ndone\n" {
		t.Fatalf("out %q, err %v", out.String(), err)
	}
	err = Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo one >&2; echo two >&2; echo three >&2; echo four >&2; exit 3"}})
	if err == nil || !strings.HasSuffix(err.Error(), "exit status 3: two; three; four") {
		t.Errorf("err = %v, want the last three stderr lines", err)
	}
}

func TestRunCancelKillsTheProcessGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	// The child's sleep holds stdout: only killing the group ends it quickly.
	err := Run(ctx, Cmd{Name: "sh", Args: []string{"-c", "sleep 30 & wait"}, Stdout: &bytes.Buffer{}})
	if err == nil || time.Since(began) > 4*time.Second {
		t.Errorf("err %v after %v", err, time.Since(began))
	}
}
