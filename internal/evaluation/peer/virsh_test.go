package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/debpkg"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/libvirtd"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// virshBusyboxVM builds a busybox VM template with the real guest agent in a
// temporary dir and returns the VMEnv of polyvisor's VM of it: the argv
// (QEMU by name, as polyvisor runs it) is the one
// internal/driver/qemu's commandLine writes for an unconfined
// amd64 microVM with 2 vCPUs and 512 MiB, under TCG (this host's KVM does
// not boot Linux guests, see DESIGN.md).
func virshBusyboxVM(t *testing.T, ctx context.Context) *VMEnv {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mke2fs", "dpkg-deb", "xz", "go"} {
		hostreq.Need(t, tool)
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "polyvisor-agent")
	build := exec.CommandContext(ctx, "go", "build", "-o", agent, "github.com/polyvisor/polyvisor/cmd/polyvisor-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v: %s", err, out)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := template.BuildBusyboxArch(ctx, rootfs, "amd64", debpkg.DefaultCacheDir, nil); err != nil {
		t.Fatal(err)
	}
	tpl := filepath.Join(dir, "template")
	if err := os.Mkdir(tpl, 0o755); err != nil {
		t.Fatal(err)
	}
	boot, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: rootfs, Arch: "amd64", OutDir: tpl, CacheDir: debpkg.DefaultCacheDir, Agent: agent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("busybox VM template built in %s", time.Since(began).Round(time.Millisecond))
	vm := &VMEnv{
		Base: filepath.Join(tpl, boot.Disk), Kernel: filepath.Join(tpl, boot.Kernel), Initrd: filepath.Join(tpl, boot.Initrd),
		Append: strings.TrimSpace("console=" + boot.Console + " " + boot.Cmdline + " " + vmimage.HostnameParam + "=g " + vmimage.TCGCmdline("amd64")),
		Accel:  "tcg", AgentPort: "org.polyvisor.agent",
	}
	run := filepath.Join(dir, "run")
	vm.Argv = []string{
		boot.QEMU, "-name", "g", "-machine", boot.Machine + ",accel=tcg", "-cpu", "max", "-smp", "2", "-m", "512",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", vm.Kernel, "-initrd", vm.Initrd, "-append", vm.Append,
		"-drive", "id=root,file=" + filepath.Join(dir, "guest.qcow2") + ",format=qcow2,if=none,discard=unmap",
		"-device", "virtio-blk-device,drive=root,bootindex=1",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=" + filepath.Join(run, "agent.sock") + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + vm.AgentPort,
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
		"-qmp", "unix:" + filepath.Join(run, "qmp.sock") + ",server=on,wait=off",
	}
	return vm
}

// virshHostState is what a peer could leave behind on the host.
type virshHostState struct {
	procs   []string        // libvirt's daemons: "comm pid"
	paths   map[string]bool // libvirt's default dirs: present or not
	etc     []string        // /etc/libvirt's entries
	machine []string        // the machine cgroup and what is under it
	links   []string        // libvirt's links
}

// ownProcesses lists the processes whose command line names dir or that
// run in one of the namespaces nss ("mnt:[4026532000]").
func ownProcesses(dir string, nss []string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		in := bytes.Contains(cmdline, []byte(dir))
		for _, ns := range []string{"mnt", "net"} {
			link, _ := os.Readlink("/proc/" + e.Name() + "/ns/" + ns)
			in = in || slices.Contains(nss, link)
		}
		if in {
			found = append(found, e.Name()+" "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

func readVirshHostState(t *testing.T) virshHostState {
	t.Helper()
	var s virshHostState
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		name := strings.TrimSpace(string(comm))
		// Others' QEMUs come and go on this shared host: a peer's QEMU is
		// told by its files under Env.Dir (see ownProcesses).
		if err == nil && slices.Contains([]string{"libvirtd", "virtlogd", "virtlockd"}, name) {
			s.procs = append(s.procs, fmt.Sprintf("%s %d", name, pid))
		}
	}
	s.paths = map[string]bool{}
	for _, p := range []string{"/run/libvirt", "/var/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/run/libvirtd.pid"} {
		_, err := os.Lstat(p)
		s.paths[p] = err == nil
	}
	etc, _ := os.ReadDir("/etc/libvirt")
	for _, e := range etc {
		s.etc = append(s.etc, e.Name())
	}
	if slices.Contains(cgroup.Children("/"), "machine") {
		s.machine = append([]string{"machine"}, cgroup.Children("/machine")...)
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		// libvirt's bridges and taps; other engineers' veths come and go.
		if n := l.Name(); strings.HasPrefix(n, "virbr") || strings.HasPrefix(n, "vnet") || strings.HasPrefix(n, "macvtap") {
			s.links = append(s.links, n)
		}
	}
	return s
}

// qemuPSS is a process's proportional set size from smaps_rollup, in MiB.
func qemuPSS(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no Pss in /proc/%d/smaps_rollup", pid)
	return 0
}

// TestVirshPeer runs polyvisor's busybox VM through a private libvirtd:
// every step of the Manager, with its time in the log, then checks that
// Close left nothing on the host. The same argv run by hand as raw QEMU
// gives the boot time and idle PSS to compare with.
func TestVirshPeer(t *testing.T) {
	testgate.RequireRoot(t, "needs root: libvirtd runs QEMU as root in namespaces of its own")
	for _, tool := range []string{"libvirtd", "virsh", "unshare", "mount", "mkdir", "sh", "cp"} {
		hostreq.Need(t, tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	vm := virshBusyboxVM(t, ctx)
	// Alone with the host's machine cgroup and libvirt processes: the
	// host is compared before and after.
	release, err := libvirtd.Exclusive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	before := readVirshHostState(t)

	m, err := New("virsh")
	if err != nil {
		t.Fatal(err)
	}
	v := m.(*Virsh)
	dir, err := os.MkdirTemp("", "pv-virsh-")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			if err := m.Close(context.WithoutCancel(ctx)); err != nil {
				t.Errorf("Close after a failure: %v", err)
			}
		}
	}()
	step := func(name string, f func() error) time.Duration {
		t.Helper()
		began := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		took := time.Since(began)
		t.Logf("virsh peer: %s took %s", name, took.Round(time.Millisecond))
		return took
	}
	step("Setup (libvirtd until it answers)", func() error {
		return m.Setup(ctx, Env{Dir: dir, CPUs: 2, MemoryMiB: 512, VM: vm})
	})

	// libvirtd runs in mount and network namespaces of its own: the host
	// has no libvirt dirs even now, and no link of libvirt's.
	daemonPID := v.daemon.PID()
	var daemonNS []string
	for _, ns := range []string{"mnt", "net"} {
		ours, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", daemonPID, ns))
		if err != nil || its == ours {
			t.Errorf("libvirtd's %s namespace %q (%v) is the test's %q", ns, its, err, ours)
		}
		daemonNS = append(daemonNS, its)
	}
	for p, was := range before.paths {
		if _, err := os.Lstat(p); (err == nil) != was {
			t.Errorf("%s: present %v while libvirtd runs, %v before", p, err == nil, was)
		}
	}

	step("Create (overlay + virsh define)", func() error { return m.Create(ctx, "g0") })
	step("Start (virsh start until the agent answers)", func() error { return m.Start(ctx, "g0") })

	var out bytes.Buffer
	code, err := m.Exec(ctx, "g0", []string{"echo", "hi"}, nil, &out, &out)
	if err != nil || code != 0 || out.String() != "hi\n" {
		t.Errorf("exec echo hi: code %d, err %v, output %q", code, err, out.String())
	}
	out.Reset()
	code, err = m.Exec(ctx, "g0", []string{"sh", "-c", "cat; exit 3"}, strings.NewReader("from stdin\n"), &out, &out)
	if err != nil || code != 3 || out.String() != "from stdin\n" {
		t.Errorf("exec cat with stdin: code %d, err %v, output %q; want 3 and the input back", code, err, out.String())
	}

	pids, err := m.PIDs(ctx, "g0")
	if err != nil || len(pids) != 1 {
		t.Fatalf("PIDs = %v, %v; want the QEMU", pids, err)
	}
	// The leftover check below sees the peer's processes: here, libvirtd
	// and the QEMU.
	running := strings.Join(ownProcesses(dir, daemonNS), "\n")
	for _, pid := range []int{daemonPID, pids[0]} {
		if !strings.Contains("\n"+running, fmt.Sprintf("\n%d ", pid)) {
			t.Errorf("process %d is not among the peer's:\n%s", pid, running)
		}
	}
	argv, err := Cmdline(pids[0])
	if err != nil {
		t.Fatalf("QEMU %d: %v", pids[0], err)
	}
	qemuLine := strings.Join(argv, " ")
	for _, want := range []string{vm.Argv[0], "microvm", "-kernel " + vm.Kernel, "-initrd " + vm.Initrd, "virtio-blk-device", "name\":\"org.polyvisor.agent", "-accel tcg", "-smp 2", "-m 512"} {
		if !strings.Contains(qemuLine, want) {
			t.Errorf("libvirt's QEMU lacks %q: %s", want, qemuLine)
		}
	}
	for _, nic := range []string{"-netdev", "-nic ", "virtio-net"} {
		if strings.Contains(qemuLine, nic) {
			t.Errorf("libvirt's QEMU has a NIC (%s): %s", nic, qemuLine)
		}
	}
	time.Sleep(time.Second)
	libvirtPSS := qemuPSS(t, pids[0])

	step("Stop (virsh shutdown, until QEMU has ended)", func() error { return m.Stop(ctx, "g0") })
	if v.forcedStops != 0 {
		t.Errorf("the guest ignored libvirt's ACPI shutdown for %s and was destroyed", virshStopTimeout)
	}
	if _, err := m.PIDs(ctx, "g0"); err == nil {
		t.Error("PIDs of a stopped guest succeeded")
	}
	step("Delete (virsh undefine + overlay)", func() error { return m.Delete(ctx, "g0") })
	if names, err := v.daemon.virsh(ctx, "list", "--all", "--name"); err != nil || strings.TrimSpace(names) != "" {
		t.Errorf("domains after Delete: %q, %v", names, err)
	}

	// A guest left running is destroyed by Close.
	step("Create", func() error { return m.Create(ctx, "g1") })
	step("Start", func() error { return m.Start(ctx, "g1") })
	if err := m.Delete(ctx, "g1"); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("Delete of a running guest: %v, want it refused", err)
	}
	closed = true
	step("Close (with g1 running)", func() error { return m.Close(ctx) })

	after := readVirshHostState(t)
	if !slices.Equal(after.procs, before.procs) {
		t.Errorf("processes after Close: %q, before Setup: %q", after.procs, before.procs)
	}
	for p, was := range before.paths {
		if after.paths[p] != was {
			t.Errorf("%s: present %v after Close, %v before Setup", p, after.paths[p], was)
		}
	}
	if !slices.Equal(after.etc, before.etc) || !slices.Equal(after.machine, before.machine) || !slices.Equal(after.links, before.links) {
		t.Errorf("after Close: /etc/libvirt %q, machine cgroups %q, links %q; before Setup: %q, %q, %q",
			after.etc, after.machine, after.links, before.etc, before.machine, before.links)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Env.Dir %s is left: %v", dir, err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mounts, []byte(dir)) {
		t.Errorf("a mount under %s is left", dir)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", daemonPID)); err == nil {
		t.Errorf("libvirtd %d still runs", daemonPID)
	}
	if left := ownProcesses(dir, daemonNS); len(left) > 0 {
		t.Errorf("processes of the peer left: %q", left)
	}

	// A libvirtd that died leaves its QEMU running: Close ends it by pid
	// and removes its cgroups all the same.
	dir2, err := os.MkdirTemp("", "pv-virsh-")
	if err != nil {
		t.Fatal(err)
	}
	m2 := NewVirsh()
	step("Setup", func() error { return m2.Setup(ctx, Env{Dir: dir2, CPUs: 2, MemoryMiB: 512, VM: vm}) })
	step("Create", func() error { return m2.Create(ctx, "g2") })
	step("Start", func() error { return m2.Start(ctx, "g2") })
	pids, err = m2.PIDs(ctx, "g2")
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(m2.daemon.PID(), syscall.SIGKILL)
	<-m2.daemon.Exited()
	err = m2.Close(ctx)
	t.Logf("Close after libvirtd was killed: %v", err)
	if _, serr := os.Stat(fmt.Sprintf("/proc/%d", pids[0])); serr == nil {
		t.Errorf("QEMU %d of a killed libvirtd still runs after Close", pids[0])
	}
	if left := ownProcesses(dir2, nil); len(left) > 0 {
		t.Errorf("processes of the peer left: %q", left)
	}
	if after := readVirshHostState(t); !slices.Equal(after.machine, before.machine) {
		t.Errorf("machine cgroups after Close of a killed libvirtd: %q, before Setup: %q", after.machine, before.machine)
	}
	if _, err := os.Stat(dir2); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Env.Dir %s is left: %v", dir2, err)
	}

	// The same argv by hand, for comparison.
	rawDir := t.TempDir()
	disk, err := Overlay(vm.Base, rawDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	q, err := StartQEMU(vm.Argv, disk, rawDir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Stop()
	// The socket file appears when QEMU binds it, a moment before it
	// listens: a refused connection is tried again.
	c, err := q.Agent(ctx)
	for tries := 0; err != nil && errors.Is(err, syscall.ECONNREFUSED) && tries < 100; tries++ {
		time.Sleep(20 * time.Millisecond)
		c, err = q.Agent(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	rawBoot := time.Since(began)
	c.Close()
	time.Sleep(time.Second)
	rawPSS := qemuPSS(t, q.PID())
	if err := q.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("virsh peer: idle QEMU PSS %.1f MiB under libvirt, %.1f MiB run by hand with the same argv; raw QEMU boot until the agent answers %s",
		libvirtPSS, rawPSS, rawBoot.Round(time.Millisecond))
}

// What libvirt refuses comes back in its own words, and Close after a
// failed Setup or Start leaves nothing; Setup without a VM is refused
// before it starts anything.
func TestVirshFailuresInLibvirtsWords(t *testing.T) {
	testgate.RequireRoot(t, "needs root: libvirtd runs in namespaces of its own")
	for _, tool := range []string{"libvirtd", "virsh", "unshare", "mount", "mkdir", "sh", "cp", "qemu-img"} {
		hostreq.Need(t, tool)
	}
	emulator := hostreq.Need(t, "qemu-system-x86_64")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := NewVirsh().Setup(ctx, Env{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "Env.VM") {
		t.Errorf("Setup without a VM: %v, want Env.VM named", err)
	}
	base := filepath.Join(t.TempDir(), "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	release, err := libvirtd.Exclusive(ctx) // see TestVirshPeer
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	before := readVirshHostState(t)
	// run sets a peer up on vm and gives it to f, then closes it and
	// checks that nothing is left.
	run := func(vm *VMEnv, f func(m *Virsh, setupErr error)) {
		t.Helper()
		dir, err := os.MkdirTemp("", "pv-virsh-")
		if err != nil {
			t.Fatal(err)
		}
		m := NewVirsh()
		f(m, m.Setup(ctx, Env{Dir: dir, CPUs: 2, MemoryMiB: 512, VM: vm}))
		if err := m.Close(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Env.Dir %s is left: %v", dir, err)
		}
		if left := ownProcesses(dir, nil); len(left) > 0 {
			t.Errorf("processes of the peer left: %q", left)
		}
		after := readVirshHostState(t)
		if !slices.Equal(after.procs, before.procs) || !slices.Equal(after.machine, before.machine) {
			t.Errorf("after Close: libvirt processes %q, machine cgroups %q; before: %q, %q", after.procs, after.machine, before.procs, before.machine)
		}
	}

	// The emulator of the VM is missing: libvirt says so.
	argv := slices.Clone(microVMArgv)
	argv[0] = "/nonexistent/qemu-system-x86_64"
	vm := vmEnvOf(argv, testBase)
	vm.Base = base
	run(vm, func(m *Virsh, err error) {
		t.Logf("Setup with a missing emulator: %v", err)
		if err == nil || !strings.Contains(err.Error(), "Cannot check QEMU binary /nonexistent/qemu-system-x86_64") {
			t.Errorf("Setup with a missing emulator: %v, want libvirt's 'Cannot check QEMU binary'", err)
		}
	})

	// The kernel is missing: the domain is defined, its start fails in
	// libvirt's words.
	argv = slices.Clone(microVMArgv)
	argv[0] = emulator
	vm = vmEnvOf(argv, testBase)
	vm.Base, vm.Kernel = base, "/nonexistent/vmlinux"
	run(vm, func(m *Virsh, err error) {
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Create(ctx, "../g"); err == nil || !strings.Contains(err.Error(), "guest id") {
			t.Errorf("Create of ../g: %v, want the id refused", err)
		}
		if err := m.Create(ctx, "g0"); err != nil {
			t.Fatal(err)
		}
		err = m.Start(ctx, "g0")
		t.Logf("Start with a missing kernel: %v", err)
		if err == nil || !strings.Contains(err.Error(), "virsh start g0") || !strings.Contains(err.Error(), "/nonexistent/vmlinux") {
			t.Errorf("Start with a missing kernel: %v, want virsh start's error naming the kernel", err)
		}
		if _, err := m.PIDs(ctx, "g0"); err == nil {
			t.Error("a guest whose start failed has PIDs")
		}
		if err := m.Start(ctx, "nosuch"); err == nil || !strings.Contains(err.Error(), "failed to get domain 'nosuch'") {
			t.Errorf("Start of an undefined guest: %v, want libvirt's 'failed to get domain'", err)
		}
	})
}
