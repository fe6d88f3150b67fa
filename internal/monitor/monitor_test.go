package monitor_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// TestMonitorOutlivesDaemonAndRecordsExit runs a shell guest under a monitor
// whose starter dies, uses its console from two clients, then kills the
// guest's init and checks what the monitor leaves.
func TestMonitorOutlivesDaemonAndRecordsExit(t *testing.T) {
	g := newTestGuest(t, []string{"/bin/sh"}, monitor.DefaultLogMax)
	argv, _ := json.Marshal(g.argv())
	daemon := exec.Command(os.Args[0], string(argv))
	daemon.Env = append(os.Environ(), fakeDaemonEnv+"=1")
	out, err := daemon.Output()
	if ws, ok := daemon.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("fake daemon did not die as planned: %v, output %q", err, out)
	}
	monitorField, readyLine, _ := strings.Cut(string(out), " ")
	monitorPid, _ := strconv.Atoi(monitorField)
	initPid, err := monitor.ParseReady(readyLine)
	if err != nil || monitorPid == 0 {
		t.Fatalf("monitor %q: %v", monitorField, err)
	}

	if ppid := parentOf(t, initPid); ppid != monitorPid {
		t.Errorf("guest init's parent is %d, want the monitor %d (subreaper)", ppid, monitorPid)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT} {
		if err := syscall.Kill(monitorPid, sig); err != nil {
			t.Fatal(err)
		}
	}
	// Past the monitor's first memory trim, so that what follows is its
	// idle footprint.
	time.Sleep(3 * time.Second)
	if processGone(monitorPid) || processGone(initPid) {
		t.Fatal("monitor or guest died with the daemon or from SIGHUP/SIGTERM/SIGINT")
	}
	mem := smapsRollup(t, monitorPid)
	t.Logf("idle monitor with a running container: Pss %d KiB (Pss_Anon %d, Pss_File %d), Rss %d KiB",
		mem["Pss"], mem["Pss_Anon"], mem["Pss_File"], mem["Rss"])

	first := attach(t, g.cfg.Dir)
	second := attach(t, g.cfg.Dir)
	first.send(t, stream.Resize, stream.EncodeResize(33, 101))
	first.send(t, stream.Stdin, []byte("echo hello-$((6*7)); stty size\n"))
	first.expect(t, "hello-42")
	first.expect(t, "33 101")
	second.expect(t, "hello-42")
	second.send(t, stream.Stdin, []byte("echo from-second-$((1+1))\n"))
	first.expect(t, "from-second-2")
	second.conn.Close() // a client leaving changes nothing for the guest
	first.send(t, stream.Stdin, []byte("echo still-$((2+3))\n"))
	first.expect(t, "still-5")
	waitFor(t, 5*time.Second, "hello-42 in the console log", func() bool {
		data, _ := os.ReadFile(g.cfg.Log)
		return bytes.Contains(data, []byte("hello-42"))
	})

	if err := syscall.Kill(initPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := first.expectExit(t); code != 137 {
		t.Errorf("client got exit code %d, want 137", code)
	}
	waitFor(t, 10*time.Second, "the monitor to exit", func() bool { return processGone(monitorPid) })

	status := readExitFile(t, g.cfg.Dir)
	if status.Pid != initPid || status.Signal != 9 || status.ExitCode != 137 || time.Since(status.ExitedAt) > time.Minute {
		t.Errorf("exit.json: %+v, want pid %d killed by signal 9", status, initPid)
	}
	g.checkNothingLeft()
}

// TestMonitorStartFailure starts a guest whose program does not exist.
func TestMonitorStartFailure(t *testing.T) {
	g := newTestGuest(t, []string{"/no/such/program"}, monitor.DefaultLogMax)
	cmd, line, err := startMonitorCmd(g.argv())
	if err != nil {
		t.Fatal(err)
	}
	waitErr := cmd.Wait()
	if !strings.HasPrefix(line, "error ") || !strings.Contains(line, "/no/such/program") || strings.Count(line, "\n") != 1 {
		t.Errorf("ready line %q: want one error line naming the program", line)
	}
	if _, err := monitor.ParseReady(line); !errors.Is(err, monitor.ErrStartFailed) {
		t.Errorf("ParseReady: %v", err)
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("monitor exit: %v, want status 1", waitErr)
	}
	t.Logf("ready line: %s", strings.TrimSpace(line))
	for _, name := range []string{monitor.InitPidName, monitor.ExitFileName} {
		if _, err := os.Stat(filepath.Join(g.cfg.Dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after a failed start: %v", name, err)
		}
	}
	if _, err := os.Stat(g.cfg.Log); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("console log made by a failed start: %v", err)
	}
	g.checkNothingLeft()
}

// TestMonitorRefusesExistingContainer checks that a second monitor for a
// running guest's id fails without touching the guest.
func TestMonitorRefusesExistingContainer(t *testing.T) {
	g := newTestGuest(t, []string{"/bin/sh"}, monitor.DefaultLogMax)
	cmd, line, err := startMonitorCmd(g.argv())
	if err != nil {
		t.Fatal(err)
	}
	initPid, err := monitor.ParseReady(line)
	if err != nil {
		t.Fatal(err)
	}
	second := g.cfg
	second.Dir = filepath.Join(t.TempDir(), "run2")
	dup, dupLine, err := startMonitorCmd(append([]string{g.bin}, second.Args()...))
	if err != nil {
		t.Fatal(err)
	}
	dup.Wait()
	if !strings.Contains(dupLine, "already exists") {
		t.Errorf("second monitor's ready line %q, want already exists", dupLine)
	}
	if processGone(initPid) {
		t.Fatal("the second monitor killed the running guest")
	}
	syscall.Kill(initPid, syscall.SIGKILL)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("monitor: %v", err)
	}
}

// TestMonitorDisconnectsSlowClient checks that a client that stops reading
// holds up neither the guest, nor the log, nor the other clients.
func TestMonitorDisconnectsSlowClient(t *testing.T) {
	g := newTestGuest(t, []string{"/bin/sh"}, 64<<20)
	cmd, line, err := startMonitorCmd(g.argv())
	if err != nil {
		t.Fatal(err)
	}
	initPid, err := monitor.ParseReady(line)
	if err != nil {
		t.Fatal(err)
	}
	slow := attach(t, g.cfg.Dir)
	fast := attach(t, g.cfg.Dir)
	time.Sleep(100 * time.Millisecond) // let the monitor accept both
	// About 4 MB: more than the slow client's backlog and socket buffers.
	fast.send(t, stream.Stdin, []byte("yes filler-0123456789012345678901234567890123456789 | head -n 80000; echo done-$((40+2))\n"))
	fast.expect(t, "done-42")

	slow.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, slow.conn)
	if err != nil {
		t.Fatalf("slow client was not disconnected (read %d bytes): %v", n, err)
	}
	if n >= 4<<20 {
		t.Errorf("slow client got all %d bytes; it should have been cut off", n)
	}
	waitFor(t, 5*time.Second, "done-42 in the console log", func() bool {
		data, _ := os.ReadFile(g.cfg.Log)
		return bytes.Contains(data, []byte("done-42"))
	})
	syscall.Kill(initPid, syscall.SIGKILL)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("monitor: %v", err)
	}
}

// TestMonitorLogRotation runs a guest that prints more than --log-max and
// exits by itself.
func TestMonitorLogRotation(t *testing.T) {
	const logMax = 4096
	script := `i=0; while [ $i -lt 300 ]; do echo "line-$i-$(printf '%040d' 0)"; i=$((i+1)); done; exit 3`
	g := newTestGuest(t, []string{"/bin/sh", "-c", script}, logMax)
	cmd, line, err := startMonitorCmd(g.argv())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := monitor.ParseReady(line); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	status := readExitFile(t, g.cfg.Dir)
	if status.ExitCode != 3 || status.Signal != 0 {
		t.Errorf("exit.json: %+v, want exit code 3", status)
	}
	cur, err := os.ReadFile(g.cfg.Log)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(g.cfg.Log + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > logMax || len(old) != logMax {
		t.Errorf("log sizes %d and %d (.1), want at most %d and exactly %d", len(cur), len(old), logMax, logMax)
	}
	both := string(old) + string(cur)
	if !strings.Contains(both, "line-299-") || strings.Contains(both, "line-0-") {
		t.Errorf("the two generations should hold the last lines only; they end %q", both[max(0, len(both)-80):])
	}
	g.checkNothingLeft()
}

// checkNothingLeft checks what a monitor must remove when it is done: the
// container's runc state, its cgroups, the sockets.
func (g *testGuest) checkNothingLeft() {
	t := g.t
	t.Helper()
	if out, err := exec.Command(g.cfg.Runc, "--root", g.cfg.RuncRoot, "state", g.cfg.ID).CombinedOutput(); err == nil {
		t.Errorf("runc still has the container: %s", out)
	}
	for _, dir := range cgroupDirs(g.cfg.ID) {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup %s left behind", dir)
		}
	}
	for _, name := range []string{monitor.ConsoleSocketName, monitor.ConsoleRecvSocketName} {
		if _, err := os.Stat(filepath.Join(g.cfg.Dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
}

func readExitFile(t *testing.T, dir string) monitor.ExitStatus {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, monitor.ExitFileName))
	if err != nil {
		t.Fatal(err)
	}
	var s monitor.ExitStatus
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("exit.json %q: %v", data, err)
	}
	return s
}

// attachClient is a test's console connection.
type attachClient struct {
	conn   net.Conn
	output []byte // Stdout received so far
}

func attach(t *testing.T, dir string) *attachClient {
	t.Helper()
	conn, err := net.Dial("unix", filepath.Join(dir, monitor.ConsoleSocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &attachClient{conn: conn}
}

func (c *attachClient) send(t *testing.T, typ byte, data []byte) {
	t.Helper()
	if err := stream.WriteFrame(c.conn, typ, data); err != nil {
		t.Fatal(err)
	}
}

// expect reads Stdout frames until want has appeared in output that was not
// matched before (the echo of a typed command does not count, since the
// commands compute what they print).
func (c *attachClient) expect(t *testing.T, want string) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if i := bytes.Index(c.output, []byte(want)); i >= 0 {
			c.output = c.output[i+len(want):]
			return
		}
		// Keep the search cheap when the guest prints a lot.
		if keep := 4096 + len(want); len(c.output) > keep {
			c.output = c.output[len(c.output)-keep:]
		}
		f, err := stream.ReadFrame(c.conn)
		if err != nil {
			t.Fatalf("waiting for %q (have %q): %v", want, c.output, err)
		}
		if f.Type == stream.Stdout {
			c.output = append(c.output, f.Data...)
		}
	}
}

// expectExit reads until the Exit frame and returns its code.
func (c *attachClient) expectExit(t *testing.T) int32 {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := stream.ReadFrame(c.conn)
		if err != nil {
			t.Fatalf("waiting for the exit frame: %v", err)
		}
		if f.Type == stream.Exit {
			code, err := stream.DecodeExit(f.Data)
			if err != nil {
				t.Fatal(err)
			}
			return code
		}
	}
}
