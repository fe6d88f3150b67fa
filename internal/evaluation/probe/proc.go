package probe

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// getppid measures nanoseconds per getppid(2), about the cheapest
// system call there is: the cost of entering and leaving the kernel.
func getppid(ctx context.Context, r *runner) ([]float64, string, error) {
	kernel := func(n int) error {
		for range n {
			sink += uint64(unix.Getppid())
		}
		return nil
	}
	runs, err := r.timed(ctx, kernel, each(time.Nanosecond))
	return runs, "", err
}

// procSpawn measures microseconds per fork, exec and wait of the probe
// itself (through /proc/self/exe, so wherever it was copied) with
// ExitArg, which a static Go binary answers by exiting at once.
func procSpawn(ctx context.Context, r *runner) ([]float64, string, error) {
	const exe = "/proc/self/exe"
	attr := &os.ProcAttr{}
	if devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		defer devNull.Close()
		attr.Files = []*os.File{devNull, devNull, devNull}
	}
	kernel := func(n int) error {
		for range n {
			p, err := os.StartProcess(exe, []string{"polyvisor-probe", ExitArg}, attr)
			if err != nil {
				return err
			}
			state, err := p.Wait()
			if err != nil {
				return err
			}
			if !state.Success() {
				return fmt.Errorf("%s %s: %s", exe, ExitArg, state)
			}
		}
		return nil
	}
	runs, err := r.timed(ctx, kernel, each(time.Microsecond))
	return runs, "", err
}
