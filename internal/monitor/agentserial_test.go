package monitor_test

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// agentSerialConfig is a monitor whose guest script serves the agent
// serial's pty as an echo service: every line "x" it reads comes back as
// "echo:x"; "quit" ends it.
func agentSerialConfig(t *testing.T) monitor.Config {
	cfg := commandConfig(t, `exec 3<>"$2"; touch "$1"
while read -r line <&3; do
	[ "$line" = quit ] && exit 0
	printf 'echo:%s\n' "$line" >&3
done`)
	// A short path: a unix socket's must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "as")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.AgentSerial = filepath.Join(dir, "agent.sock")
	cfg.Command = append(cfg.Command, "--port="+monitor.AgentPtyArg)
	// The script takes the path without the flag's name.
	cfg.Command[2] = strings.Replace(cfg.Command[2], `"$2"`, `"${2#--port=}"`, 1)
	return cfg
}

func dialSerial(t *testing.T, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

func TestMonitorRelaysTheAgentSerial(t *testing.T) {
	bin := buildMonitor(t)
	cfg := agentSerialConfig(t)
	cmd, line, err := startMonitorCmd(append([]string{bin}, cfg.Args()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if _, err := monitor.ParseReady(line); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	fi, err := os.Stat(cfg.AgentSerial)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent socket: %v %v, want a socket with mode 0600", fi.Mode(), err)
	}

	// Raw both ways: control bytes pass, and "\n" does not become "\r\n".
	first, firstR := dialSerial(t, cfg.AgentSerial)
	if _, err := first.Write([]byte("a\x03\x04b\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := firstR.ReadString('\n'); err != nil || got != "echo:a\x03\x04b\n" {
		t.Fatalf("first client got %q, %v", got, err)
	}

	// A second client replaces the first, which is disconnected.
	second, secondR := dialSerial(t, cfg.AgentSerial)
	if _, err := firstR.ReadByte(); err != io.EOF {
		t.Fatalf("the replaced client reads %v, want EOF", err)
	}
	if _, err := second.Write([]byte("again\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := secondR.ReadString('\n'); err != nil || got != "echo:again\n" {
		t.Fatalf("second client got %q, %v", got, err)
	}

	// Between clients the guest keeps its line (the monitor holds the
	// slave), and a client that comes back is served.
	second.Close()
	third, thirdR := dialSerial(t, cfg.AgentSerial)
	third.Write([]byte("back\n"))
	if got, err := thirdR.ReadString('\n'); err != nil || got != "echo:back\n" {
		t.Fatalf("third client got %q, %v", got, err)
	}
	third.Write([]byte("quit\n"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	if _, err := os.Stat(cfg.AgentSerial); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("agent socket left after the guest ended: %v", err)
	}
}

func TestAgentSerialNeedsACommand(t *testing.T) {
	dir := t.TempDir()
	cfg := monitor.Config{ID: "x", Dir: dir, Log: filepath.Join(dir, "log"), LogMax: 1, Bundle: dir, Runc: "runc", RuncRoot: dir, AgentSerial: filepath.Join(dir, "a.sock")}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a container with --agent-serial validated")
	}
	cfg = monitor.Config{ID: "x", Dir: dir, Log: filepath.Join(dir, "log"), LogMax: 1, Command: []string{"true"}, AgentSerial: "rel.sock"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a relative --agent-serial validated")
	}
	cfg.AgentSerial = filepath.Join(dir, "a.sock")
	got, err := monitor.ParseArgs(cfg.Args())
	if err != nil || got.AgentSerial != cfg.AgentSerial {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}
