package uml

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// canaryTimeout bounds the canary boot, which takes about a second.
const canaryTimeout = 30 * time.Second

// canaryMarker is what the canary's init prints once it has read its disk.
const canaryMarker = "POLYVISOR-UML-CANARY-OK"

// canaryMemory is the canary's RAM: below about 48 MiB the kernel at times
// fails to allocate its memory map.
const canaryMemory = "64M"

// canaryInit is the canary's init: it reads a block of a ubd disk (the
// guest's root disk's path through the kernel), says so and powers off.
const canaryInit = `#!/bin/busybox sh
/bin/busybox dd if=/dev/ubda of=/dev/null bs=4096 count=1 2>/dev/null && /bin/busybox echo ` + canaryMarker + `
/bin/busybox poweroff -f
`

// canaryVerdict caches a canary that worked: the kernel and the host do
// not change under a running daemon. A failure is tried again at the next
// check, so that a host fixed meanwhile is seen.
type canaryVerdict struct {
	mu     sync.Mutex
	works  bool
	reason string
}

// Check implements driver.Driver: whether Debian's UML kernel is there
// and really boots (the canary), else why not.
func (d *Driver) Check(ctx context.Context) (v api.ClassVerdict) {
	began := time.Now()
	v = api.ClassVerdict{Class: Class, Details: map[string]string{}}
	defer func() { v.Duration = time.Since(began).Round(time.Millisecond).String() }()
	if size := xsaveSize(); size > 0 {
		v.Details["xsaveBytes"] = strconv.Itoa(size)
	}
	kernel, err := hostreq.Lookup(KernelProgram)
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	v.Details["kernel"] = kernel
	if out, err := exec.CommandContext(ctx, kernel, "--version").Output(); err == nil {
		v.Details["kernelVersion"] = strings.TrimSpace(string(out))
	}
	d.canary.mu.Lock()
	defer d.canary.mu.Unlock()
	if !d.canary.works {
		d.canary.works, d.canary.reason = d.runCanary(ctx, kernel)
	}
	v.Works, v.Reason = d.canary.works, d.canary.reason
	return v
}

// runCanary boots the kernel on a hostfs root holding a static busybox
// and a ubd disk, with a deadline, and reports whether its init ran.
func (d *Driver) runCanary(ctx context.Context, kernel string) (bool, string) {
	busybox, err := hostreq.Lookup(hostreq.StaticBusybox)
	if err != nil {
		return false, "UML canary not run: " + err.Error()
	}
	if err := os.MkdirAll(d.tmpRoot(), 0o700); err != nil {
		return false, "UML canary not run: " + err.Error()
	}
	dir, err := os.MkdirTemp(d.tmpRoot(), ".canary-")
	if err != nil {
		return false, "UML canary not run: " + err.Error()
	}
	defer func() {
		os.RemoveAll(dir)
		os.Remove(d.tmpRoot()) // once no guest has a directory there
	}()
	root := filepath.Join(dir, "root")
	for _, sub := range []string{"bin", "dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return false, "UML canary not run: " + err.Error()
		}
	}
	disk := filepath.Join(dir, "disk.img")
	err = errors.Join(
		runcmd.Run(ctx, runcmd.Cmd{Name: "cp", Args: []string{busybox, filepath.Join(root, "bin", "busybox")}}),
		os.WriteFile(filepath.Join(root, "init"), []byte(canaryInit), 0o755),
		os.WriteFile(disk, make([]byte, 64<<10), 0o600),
	)
	if err != nil {
		return false, "UML canary not run: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, canaryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, kernel, "mem="+canaryMemory,
		"root=/dev/root", "rootfstype=hostfs", "rootflags="+root, "rw", "init=/init",
		"ubd0r="+disk, "con0=fd:0,fd:1", "con=null", "ssl=null", "uml_dir="+dir, "umid=canary")
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	// The kernel's helper processes share its process group: a canary
	// that hangs is killed whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	out, runErr := cmd.CombinedOutput()
	text := string(out)
	if strings.Contains(text, canaryMarker) {
		return true, fmt.Sprintf("a canary guest booted under %s (ubd disk, hostfs root) and powered off", filepath.Base(kernel))
	}
	why := runcmd.LastLines(text, 2)
	if why == "" {
		why = "no output"
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		why = fmt.Sprintf("it did not reach its init within %s (%s)", canaryTimeout, why)
	case runErr != nil:
		why = fmt.Sprintf("%v: %s", runErr, why)
	}
	if strings.Contains(text, "fp regs") {
		why += fmt.Sprintf("; this UML build cannot restore its processes' FPU state on this host, whose XSAVE area is %d bytes (CPUID 0xD)", xsaveSize())
	}
	return false, "UML canary failed: " + why
}
