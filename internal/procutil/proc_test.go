package procutil

import (
	"context"
	"os"
	"os/exec"
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
