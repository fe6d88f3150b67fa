package qmp_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// TestRealQEMU drives a real QEMU through a paused machine's life: no
// kernel is needed, since -S keeps the CPUs from running until Cont.
func TestRealQEMU(t *testing.T) {
	testgate.RequireLong(t, "runs real QEMU")
	machines := []struct {
		binary  string
		machine []string
		target  string
	}{
		{"qemu-system-x86_64", []string{"-machine", "microvm,accel=tcg"}, "x86_64"},
		{"qemu-system-aarch64", []string{"-machine", "virt,accel=tcg", "-cpu", "cortex-a57"}, "aarch64"},
	}
	for _, mc := range machines {
		t.Run(mc.target, func(t *testing.T) {
			binary := requireQEMU(t, mc.binary)
			checkNoLeaks(t)
			testRealQEMU(t, binary, mc.machine, mc.target)
		})
	}
}

func testRealQEMU(t *testing.T, binary string, machine []string, target string) {
	ctx := testCtx(t)
	dir := t.TempDir()
	socket := filepath.Join(dir, "qmp.sock")
	image := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(image, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(slices.Clone(machine),
		"-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-m", "64", "-S",
		"-drive", "file="+image+",format=raw,if=none,id=drive0,node-name=disk0",
		"-qmp", "unix:"+socket+",server=on,wait=off")
	exited := startProcess(t, binary, args...)

	// Dial runs while QEMU is still starting, so it meets a missing socket.
	m, err := qmp.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	var st qmp.StatusInfo
	run(t, m, qmp.QueryStatus{}, &st)
	t.Logf("status after -S: %+v", st)
	if st.Status != "prelaunch" || st.Running {
		t.Errorf("status after -S: %+v, want prelaunch, not running", st)
	}

	var ver qmp.VersionInfo
	run(t, m, qmp.QueryVersion{}, &ver)
	t.Logf("version: %s (%s)", ver.QEMU, ver.Package)
	if want := versionOf(t, binary); ver.QEMU.String() != want {
		t.Errorf("QMP says version %s, %s --version says %s", ver.QEMU, binary, want)
	}

	var kvm qmp.KVMInfo
	run(t, m, qmp.QueryKVM{}, &kvm)
	t.Logf("kvm: %+v", kvm)
	if kvm.Enabled {
		t.Error("KVM enabled under accel=tcg")
	}

	var cpus []qmp.CPUInfo
	run(t, m, qmp.QueryCPUsFast{}, &cpus)
	t.Logf("cpus: %+v", cpus)
	if len(cpus) != 1 || cpus[0].CPUIndex != 0 || cpus[0].ThreadID <= 0 || cpus[0].Target != target {
		t.Errorf("cpus: %+v, want one %s CPU with a thread id", cpus, target)
	}

	var hmp string
	run(t, m, qmp.HumanMonitorCommand{CommandLine: "info status"}, &hmp)
	t.Logf("info status: %q", hmp)
	if !strings.Contains(hmp, "paused") {
		t.Errorf("info status: %q, want paused", hmp)
	}

	checkBlockResize(t, m, image)

	err = m.Run(ctx, qmp.BlockResize{Device: "nope", Size: 1}, nil)
	t.Logf("resizing a missing drive: %v", err)
	var qerr *qmp.Error
	if !errors.As(err, &qerr) || qerr.Class != qmp.ClassGenericError {
		t.Errorf("resizing a missing drive: got %v, want a GenericError", err)
	}

	// Without a kernel the CPU runs whatever is in memory, so after Cont
	// only "not paused any more" is certain.
	run(t, m, qmp.Cont{}, nil)
	run(t, m, qmp.QueryStatus{}, &st)
	t.Logf("status after cont: %+v", st)
	if !slices.Contains([]string{"running", "internal-error", "guest-panicked", "shutdown"}, st.Status) {
		t.Errorf("status after cont: %+v", st)
	}
	if st.Status == "running" {
		run(t, m, qmp.Stop{}, nil) // QEMU replies once the CPUs are stopped
		run(t, m, qmp.QueryStatus{}, &st)
		if st.Status != "paused" || st.Running {
			t.Errorf("status after stop: %+v, want paused", st)
		}
		run(t, m, qmp.SystemReset{}, nil)
		run(t, m, qmp.SystemPowerdown{}, nil)
	}

	run(t, m, qmp.Quit{}, nil)
	waitClosed(t, m.Done(), "Done after quit")
	t.Logf("connection ended: %v", m.Err())
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("QEMU exited with %v after quit", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("QEMU still running 10s after quit")
	}
}

// checkBlockResize grows the test's drive from 1 MiB to 2 MiB and checks
// what query-block and the image file say.
func checkBlockResize(t *testing.T, m *qmp.Client, image string) {
	var blocks []qmp.BlockInfo
	run(t, m, qmp.QueryBlock{}, &blocks)
	if len(blocks) != 1 || blocks[0].Device != "drive0" || blocks[0].Inserted == nil ||
		blocks[0].Inserted.File != image || blocks[0].Inserted.NodeName != "disk0" ||
		blocks[0].Inserted.Image.VirtualSize != 1<<20 {
		t.Fatalf("query-block: %+v", blocks)
	}
	run(t, m, qmp.BlockResize{NodeName: "disk0", Size: 2 << 20}, nil)
	run(t, m, qmp.QueryBlock{}, &blocks)
	if got := blocks[0].Inserted.Image.VirtualSize; got != 2<<20 {
		t.Errorf("virtual size after block_resize: %d, want %d", got, 2<<20)
	}
	if fi, err := os.Stat(image); err != nil || fi.Size() != 2<<20 {
		t.Errorf("image after block_resize: %v, %v", fi.Size(), err)
	}
}

// requireQEMU returns the path of a QEMU binary, or fails the test naming
// the package that installs it.
func requireQEMU(t *testing.T, name string) string {
	t.Helper()
	return hostreq.Need(t, name)
}

// startProcess starts a process that the test's end kills if it still runs,
// and returns a channel that gets its exit status.
func startProcess(t *testing.T, name string, args ...string) <-chan error {
	t.Helper()
	cmd := exec.Command(name, args...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		exited <- err
		close(waited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
		if t.Failed() && output.Len() > 0 {
			t.Logf("%s output:\n%s", name, output.Bytes())
		}
	})
	return exited
}

// run is Run with a failure that ends the test.
func run(t *testing.T, m *qmp.Client, cmd qmp.Command, result any) {
	t.Helper()
	if err := m.Run(testCtx(t), cmd, result); err != nil {
		t.Fatal(err)
	}
}

// versionOf returns what binary --version reports, as "major.minor.micro".
func versionOf(t *testing.T, binary string) string {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`version (\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if v == nil {
		t.Fatalf("no version in %q", out)
	}
	n := func(b []byte) int { i, _ := strconv.Atoi(string(b)); return i }
	return qmp.VersionNumber{Major: n(v[1]), Minor: n(v[2]), Micro: n(v[3])}.String()
}
