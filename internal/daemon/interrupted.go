package daemon

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
)

// endTimeout bounds the wait for the processes an interrupted start left
// to go once killed.
const endTimeout = 10 * time.Second

// finishInterrupted rolls back a start or launch that a crash interrupted
// after it recorded its intent and before it recorded the guest's
// processes: it kills what that operation left running (the monitor, QEMU
// or the container's init, found by the guest's run dir and cgroup, since
// the definition never named them), releases what the driver holds, and
// leaves the guest stopped, or, for a launch its client saw fail, removes
// it.
func (d *Daemon) finishInterrupted(ctx context.Context, e *entry, drv driver.Driver) error {
	def := e.def.Load()
	killed, err := d.endProcessesOf(def.Name)
	if err != nil {
		return fmt.Errorf("end what the interrupted %s of %s left: %w", def.Status.Intent, def.Name, err)
	}
	if def.Status.Intent == guest.IntentLaunch {
		if err := d.deleteLocked(ctx, e, true); err != nil {
			return fmt.Errorf("remove %s, whose launch was interrupted: %w", def.Name, err)
		}
	} else if err := d.markStopped(ctx, e, drv); err != nil {
		return fmt.Errorf("stop %s, whose start was interrupted: %w", def.Name, err)
	}
	d.log.Info("rolled back an interrupted operation", "guest", def.Name, "intent", def.Status.Intent, "killed", killed)
	return nil
}

// endProcessesOf kills every process of the guest (processesOf) and waits
// until they are gone. They were started by this daemon's predecessor for
// an operation that never completed; nothing else names the guest's run
// dir or lives in its cgroup.
func (d *Daemon) endProcessesOf(name string) ([]int, error) {
	var killed []int
	deadline := time.Now().Add(endTimeout)
	for {
		pids, err := d.processesOf(name)
		if err != nil {
			return killed, err
		}
		if len(pids) == 0 {
			return killed, nil
		}
		if time.Now().After(deadline) {
			return killed, fmt.Errorf("processes %v did not end within %s", pids, endTimeout)
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}
