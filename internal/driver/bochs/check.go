package bochs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// canaryTimeout bounds the canary: Bochs's BIOS gives up on a machine with
// no disk after a few seconds of emulated time (about 5 s here, 8 s with
// the host busy).
const canaryTimeout = 60 * time.Second

// canaryTTL is how long a canary's verdict is kept before host check runs
// it again.
const canaryTTL = 10 * time.Minute

// noBootable is what Bochs's BIOS says, and Bochs exits with, when no
// disk boots: the canary's proof that the emulator ran the BIOS.
const noBootable = "No bootable device"

// canaryCache keeps the canary's last verdict.
type canaryCache struct {
	mu   sync.Mutex
	at   time.Time
	took time.Duration
	err  error
}

// Check implements driver.Driver: Bochs and its BIOS images are here, and
// a canary machine with no disk starts headless, runs the BIOS and stops
// at "No bootable device".
func (d *Driver) Check(ctx context.Context) (v api.ClassVerdict) {
	began := time.Now()
	v = api.ClassVerdict{Class: Class, Details: map[string]string{}}
	defer func() { v.Duration = time.Since(began).Round(time.Millisecond).String() }()
	for _, name := range []string{bochsProgram, "bochs-bin", bochsBIOS, vgaBIOS, "unshare", "sh", "qemu-img"} {
		if _, err := hostreq.Lookup(name); err != nil {
			v.Reason = err.Error()
			return v
		}
	}
	took, err := d.runCanary(ctx)
	if err != nil {
		v.Reason = "Bochs does not run here: " + err.Error()
		return v
	}
	v.Works = true
	v.Details["canary"] = took.Round(time.Millisecond).String()
	v.Reason = fmt.Sprintf("Bochs ran its BIOS headless in %s (canary); guests boot --firmware bios templates, with console and agent on serial lines and an e1000 NIC", took.Round(100*time.Millisecond))
	return v
}

// runCanary runs the canary, or returns the verdict of one run less than
// canaryTTL ago.
func (d *Driver) runCanary(ctx context.Context) (time.Duration, error) {
	c := &d.canary
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < canaryTTL {
		return c.took, c.err
	}
	began := time.Now()
	err := canary(ctx, d.opts.Layout.RunDir())
	if ctx.Err() != nil {
		return 0, ctx.Err() // not a verdict on Bochs
	}
	c.at, c.took, c.err = time.Now(), time.Since(began), err
	return c.took, err
}

// canary boots a machine with no disk in a directory under parent, in a
// network namespace of its own as guests run, and expects Bochs to end
// within canaryTimeout with its BIOS's "No bootable device".
func canary(ctx context.Context, parent string) error {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(parent, ".bochs-canary-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m := machine{MemoryMiB: 16, CPUs: 1, Log: filepath.Join(dir, logName), NoDisk: true}
	for name, content := range map[string]string{rcName: m.bochsrc(), debuggerName: debuggerCommands} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	var paths [3]string
	for i, name := range []string{"unshare", "sh", bochsProgram} {
		if paths[i], err = hostreq.Lookup(name); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, canaryTimeout)
	defer cancel()
	argv := command(paths[0], paths[1], paths[2], dir, false)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	stderr, _ := os.Create(filepath.Join(dir, "stderr"))
	cmd.Stderr = stderr
	runErr := cmd.Run()
	stderr.Close()
	var out []string
	for _, name := range []string{outName, "stderr", logName} {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		out = append(out, string(data))
	}
	all := strings.Join(out, "\n")
	if strings.Contains(all, noBootable) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("a machine with no disk did not reach its BIOS's %q within %s", noBootable, canaryTimeout)
	}
	why := exitMessage(all)
	if why == "" {
		why = lastLines([]byte(out[1] + out[0]))
	}
	return fmt.Errorf("a machine with no disk ended before its BIOS looked for one (%v): %s", runErr, why)
}
