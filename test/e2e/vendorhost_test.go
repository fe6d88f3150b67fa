package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/libvirtd"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// vcsim is govmomi's vSphere simulator (tools/vcsim) serving in a network
// namespace, every VM's disk a real (blank) VMDK.
type vcsim struct {
	URL, Fingerprint string
	cmd              *exec.Cmd
}

// startVCSim builds tools/vcsim and serves it on the loopback of netns,
// with password as the admin's; the test's cleanup ends it.
func startVCSim(t *testing.T, netns, password string) *vcsim {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "vcsim")
	build := exec.Command("go", "build", "-o", bin, "./tools/vcsim")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vcsim: %v\n%s", err, out)
	}
	disk := filepath.Join(dir, "disk.vmdk")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+netns, bin, "--password", password, "--disk", disk)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &vcsim{cmd: cmd}
	t.Cleanup(s.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var info struct{ URL, Fingerprint string }
	if err != nil || json.Unmarshal([]byte(line), &info) != nil {
		t.Fatalf("vcsim said %q: %v", line, err)
	}
	s.URL, s.Fingerprint = info.URL, info.Fingerprint
	return s
}

// stop ends the simulator, which removes its datastore as it exits.
func (s *vcsim) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// hostGuest reads a vendor host's guest through info.
func hostGuest(t *testing.T, d *testenv.Daemon, name string) api.Guest {
	t.Helper()
	var g api.Guest
	if err := jsonUnmarshal(d.Must(t, "info", name, "--format", "json"), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// A vSphere host (govmomi's simulator) under the daemon: refused with a
// clear line for a wrong password or an unknown certificate and then kept
// nowhere; once added, its VMs are listed beside the local guests and
// powered, snapshotted, resized and exported as HOST:NAME; one moves here
// with its CPUs, memory, NIC and MAC; a host gone away is one line.
func TestVSphereHost(t *testing.T) {
	requireRoot(t)
	d := netnsDaemon(t)
	sim := startVCSim(t, d.Netns, "s3cret")
	hostsFile := filepath.Join(d.StateDir, "hosts.json")

	_, errOut, code := d.RunInput("wrong\n", "host", "add", "vc1", sim.URL, "--password-stdin", "--insecure-fingerprint", sim.Fingerprint)
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") > 0 || !strings.Contains(errOut, "password") {
		t.Errorf("host add with a wrong password: exit %d, %q; want one line about the password", code, errOut)
	}
	_, errOut, code = d.RunInput("s3cret\n", "host", "add", "vc1", sim.URL, "--password-stdin")
	if flat := strings.ToLower(strings.ReplaceAll(errOut, ":", "")); code == 0 || !strings.Contains(flat, sim.Fingerprint) || !strings.Contains(errOut, "--insecure-fingerprint") {
		t.Errorf("host add of an unknown certificate: exit %d, %q; want its fingerprint and --insecure-fingerprint", code, errOut)
	}
	if data, err := os.ReadFile(hostsFile); err == nil && strings.Contains(string(data), "vc1") {
		t.Fatalf("a refused host was kept: %s", data)
	}
	out, errOut, code := d.RunInput("s3cret\n", "host", "add", "vc1", sim.URL, "--password-stdin", "--insecure-fingerprint", sim.Fingerprint)
	if code != 0 || !strings.Contains(out, "Host vc1 added (vsphere, 2 guests)") {
		t.Fatalf("host add: exit %d: %s%s", code, out, errOut)
	}
	info, err := os.Stat(hostsFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("hosts file: %v; want 0600", err)
	}
	if strings.Contains(d.Log(), "s3cret") || strings.Contains(d.Must(t, "host", "list", "--format", "json"), "s3cret") {
		t.Error("the password reached the daemon's log or the API")
	}

	d.Must(t, "template", "build", "busybox")
	launch(t, d, "busybox", "e2e-local", "--network", "none")
	table := d.Must(t, "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if !strings.HasPrefix(lines[0], "HOST ") || !strings.Contains(table, "local ") || strings.Count(table, "vc1:") != 2 {
		t.Fatalf("list with a vSphere host:\n%s", table)
	}
	var guests []api.Guest
	if err := jsonUnmarshal(d.Must(t, "list", "vc1:", "--format", "json"), &guests); err != nil || len(guests) != 2 {
		t.Fatalf("list vc1: = %d guests, %v", len(guests), err)
	}
	vm := guests[0].Name
	src := hostGuest(t, d, vm)
	if src.Host != "vc1" || src.CPUs < 1 || src.Memory <= 0 || len(src.NICs) == 0 || src.NICs[0].MAC == "" {
		t.Fatalf("info %s: %+v", vm, src)
	}

	if src.State == "running" {
		d.Must(t, "stop", vm, "--force")
	}
	if g := hostGuest(t, d, vm); g.State != "stopped" {
		t.Fatalf("after stop: %s", g.State)
	}
	d.Must(t, "start", vm)
	if g := hostGuest(t, d, vm); g.State != "running" {
		t.Fatalf("after start: %s", g.State)
	}
	d.Must(t, "stop", vm, "--force")

	d.Must(t, "snapshot", "create", vm, "before")
	if out := d.Must(t, "snapshot", "list", vm); !strings.Contains(out, "before") {
		t.Errorf("snapshot list: %s", out)
	}
	d.Must(t, "snapshot", "restore", vm, "before")
	d.Must(t, "snapshot", "delete", vm, "before")
	expectError(t, d, "not found", "snapshot", "restore", vm, "before")

	d.Must(t, "config", "set", vm, "memory=768MiB", "cpus=2")
	src = hostGuest(t, d, vm)
	if src.Memory != 768<<20 || src.CPUs != 2 {
		t.Fatalf("after config set: %d CPUs, %d bytes", src.CPUs, src.Memory)
	}
	expectError(t, d, "works on polyvisor's own guests", "exec", vm, "--", "true")

	ova := filepath.Join(t.TempDir(), "vm.ova")
	d.Must(t, "export", vm, ova, "--format", "ova")
	if info, err := os.Stat(ova); err != nil || info.Size() == 0 {
		t.Fatalf("export wrote %v, %v", info, err)
	}

	// The OVA back to the host as a new VM, then deleted there.
	if out := d.Must(t, "import", ova, "vc1:e2e-deployed"); !strings.Contains(out, "vc1:e2e-deployed") {
		t.Errorf("import to vc1: %s", out)
	}
	if g := hostGuest(t, d, "vc1:e2e-deployed"); g.CPUs != src.CPUs || g.Memory != src.Memory || len(g.NICs) != len(src.NICs) {
		t.Errorf("the deployed VM: %d CPUs, %d bytes, %d NICs; the source %d, %d, %d", g.CPUs, g.Memory, len(g.NICs), src.CPUs, src.Memory, len(src.NICs))
	}
	d.Must(t, "delete", "vc1:e2e-deployed")
	expectError(t, d, "not found", "info", "vc1:e2e-deployed")
	expectError(t, d, "no vendor host (nor remote) is named so", "info", "nosuch:vm")

	out, errOut, code = d.Run("move", vm, "--name", "e2e-moved")
	if code != 0 || !strings.Contains(out, "guest e2e-moved") {
		t.Fatalf("move: exit %d: %s%s", code, out, errOut)
	}
	moved := hostGuest(t, d, "e2e-moved")
	if moved.CPUs != src.CPUs || moved.Memory != src.Memory || moved.Host != "" || moved.Type != "vm" {
		t.Errorf("moved guest: %d CPUs, %d bytes, host %q, type %s; source %d, %d", moved.CPUs, moved.Memory, moved.Host, moved.Type, src.CPUs, src.Memory)
	}
	config := d.Must(t, "config", "show", "e2e-moved")
	for _, nic := range src.NICs {
		if !strings.Contains(config, nic.MAC) {
			t.Errorf("moved guest's definition lacks the source's MAC %s:\n%s", nic.MAC, config)
		}
	}
	if g := hostGuest(t, d, vm); g.State != "stopped" {
		t.Errorf("the source after a move without --delete-source: %s", g.State)
	}
	d.Must(t, "delete", "e2e-moved")
	// Without --name, the source's name made a guest name.
	other := guests[1]
	d.Run("stop", other.Name, "--force")
	_, local, _ := strings.Cut(other.Name, ":")
	want := strings.ToLower(strings.ReplaceAll(local, "_", "-"))
	if out := d.Must(t, "move", other.Name, "--delete-source"); !strings.Contains(out, "guest "+want) {
		t.Errorf("move %s without --name: %s; want guest %s", other.Name, out, want)
	}
	expectError(t, d, "not found", "info", other.Name)
	d.Must(t, "delete", want)

	// The host goes away: its guests are one line each, local ones go on.
	sim.stop()
	expectError(t, d, "vc1", "info", vm)
	out, errOut, code = d.Run("list")
	if code != 0 || !strings.Contains(out, "e2e-local") || !strings.Contains(errOut, "host vc1") {
		t.Errorf("list with vc1 gone: exit %d: %s%s", code, out, errOut)
	}
	d.Must(t, "host", "remove", "vc1")
	if data, _ := os.ReadFile(hostsFile); strings.Contains(string(data), "s3cret") {
		t.Errorf("a removed host's password is left: %s", data)
	}
	if table := d.Must(t, "list"); strings.HasPrefix(table, "HOST") {
		t.Errorf("list without vendor hosts still has a HOST column:\n%s", table)
	}
	d.Must(t, "delete", "--force", "e2e-local")
}

// A libvirt host (a private libvirtd from Debian, managing a TCG domain)
// under the daemon: listed, powered, snapshotted and resized as
// HOST:NAME, then moved here, where it boots with its MAC and answers
// through polyvisor's agent.
func TestLibvirtHost(t *testing.T) {
	requireVMTemplates(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	// Alone with the host's machine cgroup (see libvirtd.Exclusive).
	release, err := libvirtd.Exclusive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	dir, err := os.MkdirTemp("", "pv-e2e-lvd-") // short: a unix socket's path
	if err != nil {
		t.Fatal(err)
	}
	lvd, err := libvirtd.Start(ctx, libvirtd.Options{Dir: dir, Programs: []string{"qemu-system-x86_64", "qemu-img"}})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lvd.KillGuests()
		if err := lvd.Stop(); err != nil {
			t.Error(err)
		}
		if err := lvd.RemoveCgroups(func(domain string) bool { return strings.HasPrefix(domain, "e2e-lv") }); err != nil {
			t.Error(err)
		}
		os.RemoveAll(dir)
	})

	// The domain's disk: a guest of polyvisor's BIOS template, exported.
	main := env.main
	main.Must(t, "create", biosTemplate(t), "e2e-lv-src", "--type", "vm")
	disk := filepath.Join(dir, "e2e-lv.qcow2")
	main.Must(t, "export", "e2e-lv-src", disk, "--format", "qcow2")
	main.Must(t, "delete", "e2e-lv-src")
	emulator, err := hostreq.Lookup("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:e2:e0:01"
	xml := filepath.Join(dir, "e2e-lv.xml")
	if err := os.WriteFile(xml, []byte(`<domain type="qemu">
  <name>e2e-lv</name>
  <memory unit="MiB">256</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type><boot dev="hd"/></os>
  <devices>
    <emulator>`+emulator+`</emulator>
    <disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="`+disk+`"/><target dev="vda" bus="virtio"/></disk>
    <interface type="user"><mac address="`+mac+`"/><model type="virtio"/></interface>
    <serial type="pty"/>
  </devices>
</domain>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "virsh", "-q", "-c", lvd.URI(), "define", xml).CombinedOutput(); err != nil {
		t.Fatalf("virsh define: %v: %s", err, out)
	}

	d := netnsDaemon(t)
	if out := d.Must(t, "host", "add", "kvm1", lvd.URI()); !strings.Contains(out, "Host kvm1 added (libvirt, 1 guests)") {
		t.Fatalf("host add: %s", out)
	}
	src := hostGuest(t, d, "kvm1:e2e-lv")
	if src.State != "stopped" || src.CPUs != 1 || src.Memory != 256<<20 || src.Accel != "qemu" || len(src.NICs) != 1 || src.NICs[0].MAC != mac {
		t.Fatalf("info kvm1:e2e-lv: %+v", src)
	}
	if table := d.Must(t, "list"); !strings.Contains(table, "kvm1:e2e-lv") || !strings.HasPrefix(table, "HOST") {
		t.Errorf("list:\n%s", table)
	}
	d.Must(t, "start", "kvm1:e2e-lv")
	if g := hostGuest(t, d, "kvm1:e2e-lv"); g.State != "running" {
		t.Errorf("after start: %s", g.State)
	}
	expectError(t, d, "stop it first", "move", "kvm1:e2e-lv")
	d.Must(t, "stop", "kvm1:e2e-lv", "--force")
	d.Must(t, "snapshot", "create", "kvm1:e2e-lv", "clean")
	if out := d.Must(t, "snapshot", "list", "kvm1:e2e-lv"); !strings.Contains(out, "clean") {
		t.Errorf("snapshot list: %s", out)
	}
	d.Must(t, "snapshot", "delete", "kvm1:e2e-lv", "clean")
	d.Must(t, "config", "set", "kvm1:e2e-lv", "memory=384MiB")
	if g := hostGuest(t, d, "kvm1:e2e-lv"); g.Memory != 384<<20 {
		t.Errorf("memory after config set: %d", g.Memory)
	}

	out, errOut, code := d.Run("move", "kvm1:e2e-lv", "--name", "e2e-lv-moved", "--start")
	t.Cleanup(func() {
		d.Run("delete", "--force", "e2e-lv-moved")
		d.Run("template", "delete", "e2e-lv-moved.vm.amd64")
	})
	if code != 0 {
		t.Fatalf("move: exit %d: %s%s", code, out, errOut)
	}
	moved := hostGuest(t, d, "e2e-lv-moved")
	if moved.State != "running" || moved.Memory != 384<<20 || moved.CPUs != 1 {
		t.Errorf("moved guest: %s, %d bytes, %d CPUs", moved.State, moved.Memory, moved.CPUs)
	}
	if cfg := d.Must(t, "config", "show", "e2e-lv-moved"); !strings.Contains(cfg, mac) {
		t.Errorf("the moved guest lost its MAC %s:\n%s", mac, cfg)
	}
	if out := d.Must(t, "exec", "e2e-lv-moved", "--", "uname", "-m"); strings.TrimSpace(out) != "x86_64" {
		t.Errorf("exec in the moved guest: %q", out)
	}
	d.Must(t, "host", "remove", "kvm1")
}
