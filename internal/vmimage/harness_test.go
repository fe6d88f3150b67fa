package vmimage_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// bootTimeout bounds every wait on a guest under TCG.
const bootTimeout = 90 * time.Second

// guestCPU is the -cpu of each QEMU: under TCG, "max" on aarch64 emulates pointer
// authentication and SVE, which cost boot time for nothing here.
var guestCPU = map[string]string{"qemu-system-x86_64": "max", "qemu-system-aarch64": "cortex-a57", "qemu-system-riscv64": "max"}

// debianArch is the Debian architecture each QEMU emulates.
var debianArch = map[string]string{"qemu-system-x86_64": "amd64", "qemu-system-aarch64": "arm64", "qemu-system-riscv64": "riscv64"}

// qemuArgs returns the command line that boots the template in dir: with the root disk when
// overlay is set, the kernel and initrd alone otherwise; extra goes on the kernel command line.
func qemuArgs(dir string, boot vmimage.Boot, overlay, extra string) []string {
	args := []string{
		"-M", boot.Machine + ",accel=tcg", "-cpu", guestCPU[boot.QEMU], "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic",
		"-kernel", filepath.Join(dir, boot.Kernel), "-initrd", filepath.Join(dir, boot.Initrd),
	}
	cmdline := "console=" + boot.Console
	if tcg := vmimage.TCGCmdline(debianArch[boot.QEMU]); tcg != "" {
		cmdline += " " + tcg
	}
	if overlay != "" {
		cmdline += " " + boot.Cmdline
		args = append(args,
			"-drive", "id=root,file="+overlay+",format=qcow2,if=none",
			"-device", "virtio-blk-device,drive=root",
			"-device", "virtio-serial-device",
			"-chardev", "null,id=agent",
			"-device", "virtserialport,chardev=agent,name=org.polyvisor.agent")
	}
	if extra != "" {
		cmdline += " " + extra
	}
	return append(args, "-append", cmdline, "-serial", "stdio")
}

// qmpSocket returns where a guest started by startGuest listens for QMP.
func (g *guest) qmpSocket() string { return filepath.Join(g.dir, "qmp.sock") }

// qmp sends one QMP command (after the capabilities handshake) and returns its reply line.
func (g *guest) qmp(command string) string {
	g.t.Helper()
	conn, err := net.Dial("unix", g.qmpSocket())
	if err != nil {
		g.t.Fatalf("QMP: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	replies := bufio.NewReader(conn)
	readReply := func() string {
		for {
			line, err := replies.ReadString('\n')
			if err != nil {
				g.t.Fatalf("QMP: %v", err)
			}
			if !strings.Contains(line, `"event"`) {
				return strings.TrimSpace(line)
			}
		}
	}
	readReply() // the greeting
	fmt.Fprintln(conn, `{"execute": "qmp_capabilities"}`)
	readReply()
	fmt.Fprintf(conn, "{\"execute\": %q}\n", command)
	return readReply()
}

// guest is one QEMU process booting a template, its serial console on a pipe.
type guest struct {
	t       *testing.T
	dir     string // holds the QMP socket
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	exited  chan struct{}
	waitErr error

	mu      sync.Mutex
	console bytes.Buffer
}

// startGuest starts QEMU for the template in dir (see qemuArgs); the test's cleanup kills it
// by its pid if it still runs.
func startGuest(t *testing.T, dir string, boot vmimage.Boot, overlay, extra string) *guest {
	t.Helper()
	g := &guest{t: t, dir: shortTempDir(t), exited: make(chan struct{})}
	args := append(qemuArgs(dir, boot, overlay, extra), "-qmp", "unix:"+g.qmpSocket()+",server=on,wait=off")
	g.cmd = exec.Command(boot.QEMU, args...)
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stderr = g.cmd.Stdout
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	g.started = time.Now()
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			g.mu.Lock()
			g.console.Write(buf[:n])
			g.mu.Unlock()
			if err != nil {
				break
			}
		}
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-g.exited:
		default:
			g.cmd.Process.Kill() // by pid: this QEMU only
			<-g.exited
		}
	})
	return g
}

// output returns what the guest printed on its console so far.
func (g *guest) output() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.console.String()
}

// waitFor waits until the console shows marker after byte offset from and returns the time
// since QEMU started and the offset just past the marker.
func (g *guest) waitFor(marker string, from int) (time.Duration, int) {
	g.t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for {
		out := g.output()
		if i := strings.Index(out[min(from, len(out)):], marker); i >= 0 {
			return time.Since(g.started), min(from, len(out)) + i + len(marker)
		}
		select {
		case <-g.exited:
			g.t.Fatalf("QEMU exited (%v) before %q appeared; console:\n%s", g.waitErr, marker, tail(out))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%q did not appear within %v; console:\n%s", marker, bootTimeout, tail(out))
		}
	}
}

// run types script into the console's shell and returns what it printed between two markers.
func (g *guest) run(script string, from int) (string, int) {
	g.t.Helper()
	begin, end := "BEGIN-"+fmt.Sprint(from), "END-"+fmt.Sprint(from)
	// The markers are typed split in two, so their echo does not match them.
	fmt.Fprintf(g.stdin, "echo %s''%s; %s; echo %s''%s\n", begin[:3], begin[3:], script, end[:3], end[3:])
	_, start := g.waitFor(begin+"\r\n", from)
	_, stop := g.waitFor(end, start)
	return strings.ReplaceAll(g.output()[start:stop-len(end)], "\r\n", "\n"), stop
}

// waitExit waits for QEMU to end by itself.
func (g *guest) waitExit(within time.Duration) (time.Duration, error) {
	select {
	case <-g.exited:
		return time.Since(g.started), nil
	case <-time.After(within):
		return 0, fmt.Errorf("QEMU still running %v later; console:\n%s", within, tail(g.output()))
	}
}

// tail returns the end of a console log for a failure message.
func tail(out string) string {
	if len(out) > 3000 {
		out = "..." + out[len(out)-3000:]
	}
	return out
}

// newOverlay creates a clone of the template's disk as the driver does: a qcow2 overlay
// backed by disk.qcow2.
func newOverlay(t *testing.T, dir string, boot vmimage.Boot) string {
	t.Helper()
	overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(dir, boot.Disk), "-F", "qcow2", overlay).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	return overlay
}

// shortTempDir returns a temporary directory with a path short enough for a unix socket
// (t.TempDir's, named after the test, can exceed the 108-byte limit).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ctxFor returns a context that ends with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
