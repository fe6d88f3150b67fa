package peer

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// busyboxVM builds a busybox VM template with polyvisor's guest agent, as
// `polyvisor template build busybox --type vm` does, and returns the
// argv polyvisor's driver gives a VM of it (see commandLine in
// internal/driver/qemu) and its base disk. The guest's own paths in the
// argv (its overlay, sockets) point nowhere: the peer replaces them.
func busyboxVM(t *testing.T) (argv []string, base string) {
	t.Helper()
	requireRoot(t)
	qemu := hostreq.Need(t, "qemu-system-x86_64")
	for _, tool := range []string{"qemu-img", "mke2fs", "go"} {
		hostreq.Need(t, tool)
	}
	if Binary("qemu") != "qemu-system-x86_64" {
		t.Skip("the VM template built here is amd64's; this host is not")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	began := time.Now()
	agentBin := filepath.Join(dir, "polyvisor-agent")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", agentBin, "./cmd/polyvisor-agent")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest agent: %v\n%s", err, out)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := template.BuildBusybox(ctx, rootfs, nil); err != nil {
		t.Fatal(err)
	}
	boot, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: rootfs, Arch: "amd64", OutDir: dir, CacheDir: "/var/cache/polyvisor/debs", Agent: agentBin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("busybox VM template: %v", time.Since(began).Round(time.Millisecond))
	guest := "/var/lib/polyvisor/guests/pv-bench-vm"
	cmdline := "console=" + boot.Console + " " + boot.Cmdline + " " + vmimage.HostnameParam + "=pv-bench-vm"
	if tcg := vmimage.TCGCmdline("amd64"); tcg != "" {
		cmdline += " " + tcg
	}
	return []string{
		qemu, "-name", "pv-bench-vm",
		"-machine", boot.Machine + ",accel=tcg", "-cpu", "max", "-smp", "2", "-m", "512",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", filepath.Join(dir, boot.Kernel), "-initrd", filepath.Join(dir, boot.Initrd), "-append", cmdline,
		"-drive", "id=root,file=" + guest + "/root.qcow2,format=qcow2,if=none,discard=unmap",
		"-device", "virtio-blk-device,drive=root,bootindex=1",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=/run/polyvisor/pv-bench-vm/agent.sock,server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + agent.PortName,
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-qmp", "unix:/run/polyvisor/pv-bench-vm/qmp.sock,server=on,wait=off",
	}, filepath.Join(dir, boot.Disk)
}

func TestRawQEMUManager(t *testing.T) {
	argv, base := busyboxVM(t)
	m, err := New("qemu")
	if err != nil {
		t.Fatal(err)
	}
	raw := m.(*RawQEMU)
	env := Env{Dir: filepath.Join(t.TempDir(), "peer"), CPUs: 1, MemoryMiB: 256, VM: vmEnvOf(argv, base)}
	ctx := t.Context()
	t.Cleanup(func() { m.Close(context.Background()) })
	step(t, "setup", func() error { return m.Setup(ctx, env) })
	step(t, "create", func() error { return m.Create(ctx, "vm0") })
	startCtx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	step(t, "start", func() error { return m.Start(startCtx, "vm0") })
	checkExec(t, m, "vm0")
	procs := alivePIDs(t, m, "vm0")
	if len(procs) != 1 {
		t.Errorf("PIDs of a raw QEMU guest: %v, want QEMU alone", procs)
	}
	// QEMU runs polyvisor's argv with the guest's paths replaced and
	// Env's limits; VMEnvOf reads it back as evaluate will from
	// polyvisor's VM.
	got, err := VMEnvOf(procs[0].PID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Base != base || got.Kernel != env.VM.Kernel || got.Initrd != env.VM.Initrd || got.Append != env.VM.Append || got.Accel != "tcg" || got.AgentPort != agent.PortName {
		t.Errorf("VMEnvOf the running QEMU: %+v\nwant base %s, kernel %s, initrd %s, append %q, tcg, %s", got, base, env.VM.Kernel, env.VM.Initrd, env.VM.Append, agent.PortName)
	}
	if a := strings.Join(got.Argv, " "); !strings.Contains(a, " -smp 1 ") || !strings.Contains(a, " -m 256 ") || strings.Contains(a, "/var/lib/polyvisor") || strings.Contains(a, "/run/polyvisor") {
		t.Errorf("QEMU's argv %q: want -smp 1 -m 256 and none of the polyvisor guest's paths", a)
	}
	step(t, "stop", func() error { return m.Stop(ctx, "vm0") })
	requireGone(t, procs)
	if console, err := os.ReadFile(filepath.Join(env.Dir, "vm0", "console.log")); err != nil || !strings.Contains(string(console), "reboot: Power down") {
		t.Errorf("the guest did not power itself off (console %v): %s", err, lastLines(string(console), 5))
	}
	if _, err := m.Exec(ctx, "vm0", []string{"true"}, nil, nil, nil); err == nil {
		t.Error("exec in a stopped guest succeeded")
	}
	step(t, "delete", func() error { return m.Delete(ctx, "vm0") })
	if _, err := os.Stat(filepath.Join(env.Dir, "vm0")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the deleted guest's dir: %v, want it gone", err)
	}
	// Close kills a guest left running and removes everything.
	step(t, "create vm1", func() error { return m.Create(ctx, "vm1") })
	step(t, "start vm1", func() error { return m.Start(startCtx, "vm1") })
	procs = alivePIDs(t, m, "vm1")
	step(t, "close", func() error { return raw.Close(context.Background()) })
	requireGone(t, procs)
	requireEmptyDir(t, env.Dir)
	if _, err := os.Stat(base); err != nil {
		t.Errorf("the base disk, which is not the peer's: %v", err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
