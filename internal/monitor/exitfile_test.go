package monitor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExitStatusOf(t *testing.T) {
	at := time.Now()
	// Wait statuses as the kernel encodes them: exit code in the second
	// byte, terminating signal in the low bits.
	exited := exitStatusOf(7, unix.WaitStatus(3<<8), at)
	if exited.ExitCode != 3 || exited.Signal != 0 || exited.Pid != 7 {
		t.Fatalf("exited: %+v", exited)
	}
	killed := exitStatusOf(7, unix.WaitStatus(unix.SIGKILL), at)
	if killed.ExitCode != 137 || killed.Signal != 9 {
		t.Fatalf("killed: %+v", killed)
	}
}

func TestExitFileDecodesWithEncodingJSON(t *testing.T) {
	dir := t.TempDir()
	want := ExitStatus{Pid: 4321, ExitCode: 137, Signal: 9, ExitedAt: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)}
	if err := writeExitFile(dir, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ExitFileName))
	if err != nil {
		t.Fatal(err)
	}
	const wantText = `{"pid":4321,"exitCode":137,"signal":9,"exitedAt":"2025-03-01T12:00:00.123456789Z"}` + "\n"
	if string(data) != wantText {
		t.Fatalf("got %s, want %s", data, wantText)
	}
	var got ExitStatus
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
