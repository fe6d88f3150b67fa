package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
)

// rootDrive starts the -drive value of a polyvisor VM's root disk.
const rootDrive = "id=root,file="

// Cmdline reads a process's argv: a running VM's QEMU command line.
func Cmdline(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00"), nil
}

// RootDisk is the root disk's file in a polyvisor VM's QEMU argv, "" when
// it has none.
func RootDisk(argv []string) string {
	for _, a := range argv {
		if rest, ok := strings.CutPrefix(a, rootDrive); ok {
			return strings.Split(rest, ",")[0]
		}
	}
	return ""
}

// BackingOf returns the backing file of a qcow2 overlay.
func BackingOf(overlay string) (string, error) {
	// -U: a running VM holds the image's lock.
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", overlay).Output()
	if err != nil {
		return "", fmt.Errorf("qemu-img info %s: %w", overlay, err)
	}
	var info struct {
		Backing     string `json:"backing-filename"`
		FullBacking string `json:"full-backing-filename"` // resolved against the overlay's dir
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("qemu-img info %s: %w", overlay, err)
	}
	if info.FullBacking != "" {
		return info.FullBacking, nil
	}
	if info.Backing == "" {
		return "", fmt.Errorf("%s has no backing file", overlay)
	}
	return info.Backing, nil
}

// QEMUArgs is polyvisor's QEMU argv made to run by hand in dir: the root
// disk is disk, the agent and QMP sockets are dir's, and the console,
// polyvisor-monitor's stdio, goes to dir/console.log. Everything else is
// kept as it was.
func QEMUArgs(argv []string, dir, disk string) []string {
	args := append([]string(nil), argv...)
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, rootDrive):
			rest := strings.SplitN(strings.TrimPrefix(a, rootDrive), ",", 2)
			args[i] = rootDrive + disk
			if len(rest) == 2 {
				args[i] += "," + rest[1]
			}
		case strings.HasPrefix(a, "socket,id=agent,path="):
			args[i] = "socket,id=agent,path=" + filepath.Join(dir, "agent.sock") + ",server=on,wait=off"
		case strings.HasPrefix(a, "stdio,id=console"):
			args[i] = "file,id=console,path=" + filepath.Join(dir, "console.log")
		case i > 0 && args[i-1] == "-qmp":
			args[i] = "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off"
		}
	}
	return args
}

// QEMU is a VM run by hand from polyvisor's argv, as a child of this
// process.
type QEMU struct {
	Dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed once QEMU has exited and been reaped
}

// Overlay makes a fresh qcow2 overlay of base in dir, a VM's root disk,
// and returns its path. A size above 0 makes the disk that large (the
// guest's root file system grows into it when the agent runs grow-root),
// 0 keeps the base's.
func Overlay(base, dir string, size int64) (string, error) {
	disk := filepath.Join(dir, "root.qcow2")
	args := []string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk}
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("raw qemu: overlay: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return disk, nil
}

// StartQEMU starts QEMU with argv rewritten by QEMUArgs for dir and disk;
// its stderr goes to dir/qemu.log. A goroutine reaps it; Stop, or QEMU's
// own exit, ends it.
func StartQEMU(argv []string, disk, dir string) (*QEMU, error) {
	args := QEMUArgs(argv, dir, disk)
	stderr, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		return nil, fmt.Errorf("raw qemu: %w", err)
	}
	defer stderr.Close() // QEMU has its own copy
	q := &QEMU{Dir: dir, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	q.cmd.Stderr = stderr
	q.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := q.cmd.Start(); err != nil {
		return nil, fmt.Errorf("raw qemu: %w", err)
	}
	go func() {
		q.cmd.Wait()
		close(q.done)
	}()
	return q, nil
}

// PID is QEMU's.
func (q *QEMU) PID() int { return q.cmd.Process.Pid }

// Exited is closed once QEMU has exited.
func (q *QEMU) Exited() <-chan struct{} { return q.done }

// Agent waits until the guest's agent answers: boot to ready. When QEMU
// exits first, the error ends with QEMU's last line of complaint.
func (q *QEMU) Agent(ctx context.Context) (*agent.Client, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-q.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	sock := filepath.Join(q.Dir, "agent.sock")
	// QEMU creates its sockets a few milliseconds after it starts.
	var err error
	for _, err = os.Stat(sock); err != nil && ctx.Err() == nil; _, err = os.Stat(sock) {
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond):
		}
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("no agent socket: %w", ctx.Err())
	}
	var c *agent.Client
	for dial := err == nil; dial; {
		c, err = agent.Dial(ctx, sock)
		// QEMU binds its socket a moment before it listens on it.
		dial = errors.Is(err, syscall.ECONNREFUSED) && ctx.Err() == nil
		if dial {
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	select {
	case <-q.done:
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("raw qemu: QEMU exited before its agent answered: %s", q.complaint())
	default:
	}
	if err != nil {
		return nil, fmt.Errorf("raw qemu: wait for the agent: %w", err)
	}
	return c, nil
}

// complaint is QEMU's last line on stderr, or its exit status.
func (q *QEMU) complaint() string {
	data, _ := os.ReadFile(filepath.Join(q.Dir, "qemu.log"))
	if msg := strings.TrimSpace(string(data)); msg != "" {
		return lastLine(msg)
	}
	return q.cmd.ProcessState.String()
}

// Stop kills QEMU and waits for it to be gone.
func (q *QEMU) Stop() error {
	if err := q.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("raw qemu: kill %d: %w", q.PID(), err)
	}
	<-q.done
	return nil
}
