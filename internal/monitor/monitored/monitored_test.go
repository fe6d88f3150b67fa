package monitored

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// fakeMonitor says its guest started, the guest being itself, then idles
// as a monitor does.
const fakeMonitor = "#!/bin/sh\necho \"ok $$\" >&3\nexec sleep 600\n"

// A running monitor costs the daemon a parked goroutine, not an OS thread:
// with hundreds of idle guests, a thread each (blocked in waitid) would
// grow the daemon by a stack and a kernel task per guest. Every monitor is
// still reaped when it exits.
func TestLauncherHoldsNoThreadPerMonitor(t *testing.T) {
	const monitors = 24
	bin := filepath.Join(t.TempDir(), "fake-monitor")
	if err := os.WriteFile(bin, []byte(fakeMonitor), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &Launcher{Monitor: bin}
	before := threads(t)
	var pids []int
	defer func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	for i := range monitors {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		status, err := l.Start(ctx, monitor.Config{ID: "g" + string(rune('a'+i)), Dir: t.TempDir(), Log: "/dev/null", LogMax: 1})
		cancel()
		if err != nil {
			t.Fatalf("start fake monitor %d: %v", i, err)
		}
		pids = append(pids, status.MonitorPID)
	}
	time.Sleep(200 * time.Millisecond) // time for a blocked waitid to have claimed its thread
	after := threads(t)
	t.Logf("%d monitors running: the test process went from %d to %d threads", monitors, before, after)
	if after-before >= monitors/2 {
		t.Errorf("%d running monitors added %d threads: the launcher blocks a thread per monitor", monitors, after-before)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	reaped := make(chan struct{})
	go func() {
		l.Wait()
		close(reaped)
	}()
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		t.Fatal("killed monitors were not reaped")
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("monitor %d is still there (a zombie) after Wait", pid)
		}
	}
}

func threads(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
