package procutil

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestIdentityLifecycle(t *testing.T) {
	self, err := Identify(os.Getpid())
	if err != nil || !self.Alive() {
		t.Fatalf("own process: %+v %v", self, err)
	}
	if (Identity{PID: self.PID, Start: self.Start + 1}).Alive() {
		t.Fatal("a different start time was taken for the same process")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child, err := Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait(context.Background()) }()
	if err := child.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: a zombie must already count as dead.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the process died")
	}
	if child.Alive() {
		t.Error("a killed (zombie) process counts as alive")
	}
	cmd.Wait()
}

func TestWaitHonoursContext(t *testing.T) {
	self, _ := Identify(os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := self.Wait(ctx); err == nil {
		t.Fatal("Wait on a live process returned without error")
	}
}

// waitInBackground runs id.Wait(ctx) on its own goroutine; the test owns
// it through the returned channel.
func waitInBackground(ctx context.Context, id Identity) <-chan error {
	done := make(chan error, 1)
	go func() { done <- id.Wait(ctx) }()
	return done
}

// awaitResult fails the test unless Wait has returned within a generous
// bound.
func awaitResult(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Wait did not return after %s", what)
		return nil
	}
}

// assertStillWaiting fails the test if Wait has returned although the
// process it waits for is alive.
func assertStillWaiting(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Wait returned (%v) while the process still runs", err)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestWaitReturnsWhenTheProcessExits(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	child, err := Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(context.Background(), child)
	assertStillWaiting(t, done)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := awaitResult(t, done, "the process was killed"); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestWaitReturnsTheContextsErrorWhenCancelled(t *testing.T) {
	self, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := waitInBackground(ctx, self)
	assertStillWaiting(t, done)
	cancel()
	if err := awaitResult(t, done, "ctx was cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
	}
	if after := openFDs(t); after != fds {
		t.Errorf("%d descriptors open after Wait, %d before: the pidfd leaked", after, fds)
	}
	// An already-ended context on a live process also returns its error.
	if err := self.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestWaitReportsAReusedPIDAsEnded(t *testing.T) {
	self, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Our own pid with another start time stands for a guest whose pid
	// now belongs to someone else: it must count as ended, not be waited
	// for (this process lives on).
	reused := Identity{PID: self.PID, Start: self.Start + 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := awaitResult(t, waitInBackground(ctx, reused), "its pid was found reused"); err != nil {
		t.Fatalf("Wait on a reused pid: %v", err)
	}
	for _, gone := range []Identity{{}, {PID: -1}} {
		if err := gone.Wait(ctx); err != nil {
			t.Errorf("Wait(%+v) = %v, want nil", gone, err)
		}
	}
}

// TestWaitWorksForAProcessThatIsNotOurChild waits for a grandchild: sh
// starts sleep in the background and exits, so sleep is reparented away
// from this process, as a guest adopted after a daemon restart is.
func TestWaitWorksForAProcessThatIsNotOurChild(t *testing.T) {
	out, err := exec.Command("sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", out, err)
	}
	grandchild, err := Identify(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer grandchild.Signal(unix.SIGKILL)
	if ppid := parentOf(t, pid); ppid == os.Getpid() {
		t.Fatalf("sleep %d is this process's child; the test needs a stranger", pid)
	}
	done := waitInBackground(context.Background(), grandchild)
	assertStillWaiting(t, done)
	if err := grandchild.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := awaitResult(t, done, "the grandchild was killed"); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	return ppid
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
