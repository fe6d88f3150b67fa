package monitor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRuncErrors(t *testing.T) {
	for _, tc := range []struct{ stderr, want string }{
		{
			`time="2026-01-01T00:00:00Z" level=warning msg="something odd"` + "\n" +
				`time="2026-01-01T00:00:00Z" level=error msg="runc run failed: exec: \"/nope\": stat /nope: no such file or directory"` + "\n",
			`runc run failed: exec: "/nope": stat /nope: no such file or directory`,
		},
		{"plain failure\nsecond line\n", "plain failure; second line"},
		{"", "(no output from runc)"},
	} {
		f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(tc.stderr)
		if got := runcErrors(f); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		f.Close()
	}
}

func TestReadPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), InitPidName)
	os.WriteFile(path, []byte("123"), 0o600)
	if pid, err := readPidFile(path); err != nil || pid != 123 {
		t.Fatalf("got %d %v", pid, err)
	}
	os.WriteFile(path, []byte("zero"), 0o600)
	if _, err := readPidFile(path); err == nil {
		t.Fatal("a bad pid file was accepted")
	}
}
