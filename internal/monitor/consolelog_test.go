package monitor

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestConsoleLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := openConsoleLog(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	all.WriteString("earlier run\n")
	for i := range 50 {
		line := bytes.Repeat([]byte{'a' + byte(i%26)}, 7+i%5)
		line = append(line, '\n')
		if n, err := l.Write(line); err != nil || n != len(line) {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
		all.Write(line)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if len(cur) > 100 || len(old) != 100 {
		t.Fatalf("sizes: current %d (max 100), previous %d (want 100)", len(cur), len(old))
	}
	if !bytes.HasSuffix(all.Bytes(), append(old, cur...)) {
		t.Fatal("the two generations are not the tail of what was written")
	}
}

func TestConsoleLogWriteLargerThanMax(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	l, err := openConsoleLog(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n, err := l.Write([]byte("0123456789abcdefghijklmno")); err != nil || n != 25 {
		t.Fatalf("write: %d %v", n, err)
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(old) != "abcdefghij" || string(cur) != "klmno" {
		t.Fatalf("got %q then %q", old, cur)
	}
}
