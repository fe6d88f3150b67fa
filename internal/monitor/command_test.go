package monitor_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// commandConfig is a monitor running a shell script as its guest, the way
// it runs QEMU.
func commandConfig(t *testing.T, script string) monitor.Config {
	dir := t.TempDir()
	return monitor.Config{
		ID: "cmd-guest", Dir: dir, Log: filepath.Join(dir, "console.log"), LogMax: monitor.DefaultLogMax,
		ReadySocket: filepath.Join(dir, "ready"),
		Command:     []string{"/bin/sh", "-c", script, "guest", filepath.Join(dir, "ready")},
	}
}

func TestMonitorRunsACommandOnItsConsole(t *testing.T) {
	bin := buildMonitor(t)
	cfg := commandConfig(t, `touch "$1"; echo booted-$((6*7)); read line; echo "got:$line"; tty; exit 5`)
	cmd, line, err := startMonitorCmd(append([]string{bin}, cfg.Args()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if _, err := monitor.ParseReady(line); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	c := attach(t, cfg.Dir)
	c.send(t, stream.Stdin, []byte("hello\n"))
	c.expect(t, "got:hello")
	c.expect(t, "/dev/pts/") // the command's stdio is the console pty
	if code := c.expectExit(t); code != 5 {
		t.Errorf("exit frame %d, want 5", code)
	}
	cmd.Wait()
	if exit := readExitFile(t, cfg.Dir); exit.ExitCode != 5 {
		t.Errorf("exit.json: %+v", exit)
	}
}

func TestMonitorReportsACommandThatDiesAtStart(t *testing.T) {
	bin := buildMonitor(t)
	cfg := commandConfig(t, `echo "qemu: could not load kernel 'vmlinux'" >&2; exit 1`)
	cmd, line, err := startMonitorCmd(append([]string{bin}, cfg.Args()...))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !strings.HasPrefix(line, "error ") || !strings.Contains(line, "could not load kernel") || !strings.Contains(line, "exit status 1") {
		t.Errorf("ready line %q: want the command's last error line and status", line)
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("monitor exit code %d, want 1", cmd.ProcessState.ExitCode())
	}
}
