package runcmd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
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

func TestRunFindsToolsOnlyThroughTheDeclaredRequirements(t *testing.T) {
	err := Run(context.Background(), Cmd{Name: "no-such-tool-of-ours"})
	var undeclared *hostreq.UndeclaredError
	if !errors.As(err, &undeclared) || undeclared.Name != "no-such-tool-of-ours" {
		t.Errorf("err = %v, want an undeclared requirement", err)
	}
	// A path is run as it is: the caller found it.
	if err := Run(context.Background(), Cmd{Name: hostreq.Need(t, "sh"), Args: []string{"-c", "exit 0"}}); err != nil {
		t.Errorf("run by path: %v", err)
	}
}
