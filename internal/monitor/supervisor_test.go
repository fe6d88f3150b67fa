package monitor_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// supervisorFixture is a supervisor's directory, its binary and the
// daemon's client, with guests made for the test.
type supervisorFixture struct {
	t      *testing.T
	client *monitored.Supervisor
	guests []*testGuest
}

func newSupervisorFixture(t *testing.T) *supervisorFixture {
	t.Helper()
	requireRootAndRunc(t)
	f := &supervisorFixture{t: t, client: &monitored.Supervisor{
		Monitor: buildMonitor(t),
		Dir:     filepath.Join(t.TempDir(), ".supervisor"),
		Linger:  time.Second,
	}}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(f.client.Dir, monitor.SupervisorLogName)); err == nil {
				t.Logf("supervisor.log:\n%s", log)
			}
		}
		for _, pid := range pidsOf(f.client.Monitor) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, g := range f.guests {
			g.cleanup()
		}
	})
	return f
}

// guest makes a busybox guest running args, to be run by the supervisor.
func (f *supervisorFixture) guest(args ...string) *testGuest {
	g := newTestGuest(f.t, args, monitor.DefaultLogMax)
	g.bin = f.client.Monitor
	f.guests = append(f.guests, g)
	return g
}

func (f *supervisorFixture) start(g *testGuest) int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	status, err := f.client.Start(ctx, g.cfg)
	if err != nil {
		f.t.Fatalf("start %s: %v", g.cfg.ID, err)
	}
	if status.InitPID == 0 || status.MonitorPID != f.supervisorPid() {
		f.t.Fatalf("start %s: status %+v, want an init and the supervisor (%d) as its monitor", g.cfg.ID, status, f.supervisorPid())
	}
	return status.InitPID
}

// supervisorPid reads the pid the running supervisor keeps in its lock.
func (f *supervisorFixture) supervisorPid() int {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(f.client.Dir, monitor.SupervisorLockName))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid == 0 {
		f.t.Fatalf("supervisor lock: %q, %v", data, err)
	}
	return pid
}

// One supervisor runs several guests: each init is its child, each console
// its own; one guest's end is recorded without touching the others; a
// start that fails and a second start of a running guest leave the others
// alone; the guests outlive a supervisor killed with SIGKILL, a new one
// takes them over with their consoles, which never hung up; with no guest
// left it exits by itself.
func TestSupervisorRunsManyGuestsAndTheyOutliveIt(t *testing.T) {
	f := newSupervisorFixture(t)
	// b's init is an interactive shell, which a hangup of its console
	// would end: it lives on only if the console outlives the supervisor.
	a, b := f.guest("/bin/sh"), f.guest("/bin/sh")
	aPid, bPid := f.start(a), f.start(b)
	sup := f.supervisorPid()
	for _, pid := range []int{aPid, bPid} {
		if ppid := parentOf(t, pid); ppid != sup {
			t.Errorf("init %d's parent is %d, want the supervisor %d", pid, ppid, sup)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT} {
		syscall.Kill(sup, sig)
	}

	ca, cb := attach(t, a.cfg.Dir), attach(t, b.cfg.Dir)
	ca.send(t, stream.Stdin, []byte("echo in-a-$((6*7))\n"))
	cb.send(t, stream.Stdin, []byte("echo in-b-$((6*8))\n"))
	ca.expect(t, "in-a-42")
	cb.expect(t, "in-b-48")

	bad := f.guest("/no/such/program")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := f.client.Start(ctx, bad.cfg); !errors.Is(err, monitor.ErrStartFailed) || !strings.Contains(err.Error(), "/no/such/program") {
		t.Errorf("start of a missing program: %v, want the start failed naming it", err)
	}
	if _, err := f.client.Start(ctx, a.cfg); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second start of a running guest: %v, want it refused", err)
	}

	syscall.Kill(aPid, syscall.SIGKILL)
	if code := ca.expectExit(t); code != 137 {
		t.Errorf("a's client got exit code %d, want 137", code)
	}
	if err := f.client.WaitEnded(ctx, a.cfg.ID); err != nil {
		t.Fatal(err)
	}
	status := readExitFile(t, a.cfg.Dir)
	if status.Pid != aPid || status.Signal != 9 {
		t.Errorf("a's exit.json: %+v, want pid %d killed by signal 9", status, aPid)
	}
	if out, err := exec.Command(a.cfg.Runc, "--root", a.cfg.RuncRoot, "state", a.cfg.ID).CombinedOutput(); err == nil {
		t.Errorf("a's container is still there after its end: %s", out)
	}
	cb.send(t, stream.Stdin, []byte("echo still-b-$((2+3))\n"))
	cb.expect(t, "still-b-5")

	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The daemon's side kept a copy of b's console and hands b to a new
	// supervisor: the console never hung up, and works again. Twice, so
	// that the copy is seen to survive a hand-over.
	for round := range 2 {
		waitFor(t, 10*time.Second, "the supervisor to die", func() bool { return processGone(sup) })
		waitFor(t, 10*time.Second, "a new supervisor", func() bool {
			pid, err := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(f.client.Dir, monitor.SupervisorLockName))))
			return err == nil && pid != sup && !processGone(pid)
		})
		if processGone(bPid) {
			t.Fatalf("round %d: guest b died with its supervisor", round)
		}
		sup = f.supervisorPid()
		waitFor(t, 10*time.Second, "b's console socket again", func() bool {
			conn, err := net.Dial("unix", filepath.Join(b.cfg.Dir, monitor.ConsoleSocketName))
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
		cb = attach(t, b.cfg.Dir)
		cb.send(t, stream.Stdin, []byte(fmt.Sprintf("echo round-%d-$((3+4))\n", round)))
		cb.expect(t, fmt.Sprintf("round-%d-7", round))
		if got, ok := f.client.Runs(b.cfg.ID); !ok || got.PID != sup {
			t.Errorf("round %d: the client says b runs under %+v, want %d", round, got, sup)
		}
		if round == 0 {
			syscall.Kill(sup, syscall.SIGKILL)
		}
	}
	adopted := sup

	c := f.guest("/bin/sh")
	cPid := f.start(c)
	if parentOf(t, cPid) != adopted {
		t.Errorf("c's parent is %d, want the new supervisor %d", parentOf(t, cPid), adopted)
	}
	syscall.Kill(bPid, syscall.SIGKILL)
	syscall.Kill(cPid, syscall.SIGKILL)
	for _, g := range []*testGuest{b, c} {
		if err := f.client.WaitEnded(ctx, g.cfg.ID); err != nil {
			t.Fatal(err)
		}
	}
	// b's init was the host's child after the first supervisor died: its
	// exit status is unknown, and no exit.json claims one.
	if _, err := os.Stat(filepath.Join(b.cfg.Dir, monitor.ExitFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an adopted guest's exit.json: %v, want none", err)
	}
	if out, err := exec.Command(b.cfg.Runc, "--root", b.cfg.RuncRoot, "state", b.cfg.ID).CombinedOutput(); err == nil {
		t.Errorf("b's container is still there after its end: %s", out)
	}
	next := f.supervisorPid()
	waitFor(t, 10*time.Second, "the idle supervisor to exit", func() bool { return processGone(next) })
	if _, err := os.Stat(filepath.Join(f.client.Dir, monitor.SupervisorSocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exited supervisor left its socket: %v", err)
	}
}

// Garbage on the supervisor's socket gets one error line, and the
// supervisor goes on serving.
func TestSupervisorAnswersGarbageWithAnError(t *testing.T) {
	f := newSupervisorFixture(t)
	g := f.guest("/bin/sh")
	pid := f.start(g)
	for _, garbage := range []string{"not json\n", `{"op":"format-disk"}` + "\n", `{"op":"start","args":["--id","../x"]}` + "\n", "\x00\xff\n"} {
		conn, err := net.Dial("unix", filepath.Join(f.client.Dir, monitor.SupervisorSocketName))
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(garbage))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		conn.Close()
		if answer := string(buf[:n]); !strings.HasPrefix(answer, "error ") || strings.Count(answer, "\n") != 1 {
			t.Errorf("answer to %q: %q, want one error line", garbage, answer)
		}
	}
	if processGone(pid) || processGone(f.supervisorPid()) {
		t.Fatal("garbage on the socket ended the guest or the supervisor")
	}
	// A client that connects and says nothing holds nothing up: it is
	// hung up on, and the supervisor still exits once idle.
	silent, err := net.Dial("unix", filepath.Join(f.client.Dir, monitor.SupervisorSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	sup := f.supervisorPid()
	syscall.Kill(pid, syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.client.WaitEnded(ctx, g.cfg.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the idle supervisor to exit despite a silent client", func() bool { return processGone(sup) })
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// When a supervisor with several guests dies, every one of them goes to
// the next, each with its console.
func TestEveryGuestOfADeadSupervisorIsHandedOver(t *testing.T) {
	f := newSupervisorFixture(t)
	guests := []*testGuest{f.guest("/bin/sh"), f.guest("/bin/sh"), f.guest("/bin/sh")}
	for _, g := range guests {
		f.start(g)
	}
	sup := f.supervisorPid()
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a new supervisor", func() bool {
		pid, err := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(f.client.Dir, monitor.SupervisorLockName))))
		return err == nil && pid != sup && !processGone(pid)
	})
	next := f.supervisorPid()
	for i, g := range guests {
		waitFor(t, 10*time.Second, g.cfg.ID+"'s console socket again", func() bool {
			got, ok := f.client.Runs(g.cfg.ID)
			return ok && got.PID == next
		})
		c := attach(t, g.cfg.Dir)
		c.send(t, stream.Stdin, []byte(fmt.Sprintf("echo guest-%d-$((5+6))\n", i)))
		c.expect(t, fmt.Sprintf("guest-%d-11", i))
	}
}
