package peer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/agent"
)

func TestVMEnvOfReadsTheBoot(t *testing.T) {
	argv := slices.Concat(polyvisorArgv[:8], []string{
		"-initrd", "/state/templates/busybox-vm-amd64/initrd.img",
		"-append", "console=ttyS0 root=/dev/vda ro polyvisor.hostname=g",
		"-device", "virtio-serial-device",
		"-device", "virtserialport,chardev=agent,name=" + agent.PortName,
	}, polyvisorArgv[8:])
	got := vmEnvOf(argv, "/state/templates/busybox-vm-amd64/disk.qcow2")
	want := VMEnv{
		Argv: argv, Base: "/state/templates/busybox-vm-amd64/disk.qcow2",
		Kernel: "/state/templates/busybox-vm-amd64/vmlinuz", Initrd: "/state/templates/busybox-vm-amd64/initrd.img",
		Append: "console=ttyS0 root=/dev/vda ro polyvisor.hostname=g", Accel: "tcg", AgentPort: agent.PortName,
	}
	if !slices.Equal(got.Argv, want.Argv) || got.Base != want.Base || got.Kernel != want.Kernel || got.Initrd != want.Initrd ||
		got.Append != want.Append || got.Accel != want.Accel || got.AgentPort != want.AgentPort {
		t.Errorf("vmEnvOf:\n%+v\nwant\n%+v", *got, want)
	}
	if got := vmEnvOf([]string{"qemu-system-x86_64", "-accel", "kvm", "-M", "q35"}, ""); got.Accel != "kvm" || got.AgentPort != "" {
		t.Errorf("vmEnvOf with -accel kvm and no agent: accel %q, agent %q", got.Accel, got.AgentPort)
	}
}

func TestVMEnvOfRefusesAProcessThatIsNoVM(t *testing.T) {
	_, err := VMEnvOf(os.Getpid())
	if err == nil || !strings.Contains(err.Error(), "not a polyvisor VM's QEMU") {
		t.Errorf("VMEnvOf(this test): %v, want it refused", err)
	}
}

func TestContainerSpecOf(t *testing.T) {
	guestDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(guestDir, "bundle"), 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(polyvisorLikeSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(guestDir, "bundle", "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	spec, err := ContainerSpecOf(guestDir)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Process.Args[0] != "/sbin/init" || len(spec.Linux.UIDMappings) != 1 {
		t.Errorf("ContainerSpecOf: %+v", spec)
	}

	// A bundle that is a link out of the guest's dir is not followed.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	linked := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(linked, "bundle")); err != nil {
		t.Fatal(err)
	}
	if _, err := ContainerSpecOf(linked); err == nil {
		t.Error("ContainerSpecOf followed a link out of the guest's dir")
	}
	if err := os.WriteFile(filepath.Join(guestDir, "bundle", "config.json"), []byte(`{"ociVersion":"1.0.2"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ContainerSpecOf(guestDir); err == nil || !strings.Contains(err.Error(), "lacks process, root or linux") {
		t.Errorf("ContainerSpecOf of an empty spec: %v", err)
	}
}

func TestWithLimitsCopies(t *testing.T) {
	spec := polyvisorLikeSpec()
	swap := int64(256 << 20)
	spec.Linux.Resources.Memory.Swap = &swap
	got := withLimits(spec, 3, 64)
	r := got.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 || *r.CPU.Quota != 300000 || *r.CPU.Period != 100000 || *r.Pids.Limit != 512 {
		t.Errorf("withLimits: memory %d swap %d quota %d period %d pids %d", *r.Memory.Limit, *r.Memory.Swap, *r.CPU.Quota, *r.CPU.Period, *r.Pids.Limit)
	}
	if *spec.Linux.Resources.Memory.Limit != 256<<20 || *spec.Linux.Resources.Memory.Swap != 256<<20 || *spec.Linux.Resources.CPU.Quota != 100000 {
		t.Error("withLimits changed the spec it copied")
	}
	if kept := withLimits(spec, 0, 0).Linux.Resources; *kept.Memory.Limit != 256<<20 || *kept.CPU.Quota != 100000 {
		t.Error("withLimits without limits changed the spec's")
	}
}

func TestWithVMLimits(t *testing.T) {
	got := withVMLimits(polyvisorArgv, 3, 1024)
	if i := slices.Index(got, "-smp"); got[i+1] != "3" {
		t.Errorf("-smp %s", got[i+1])
	}
	if i := slices.Index(got, "-m"); got[i+1] != "1024" {
		t.Errorf("-m %s", got[i+1])
	}
	if !slices.Equal(withVMLimits(polyvisorArgv, 0, 0), polyvisorArgv) || polyvisorArgv[6] != "2" {
		t.Error("withVMLimits without limits changed the argv, or changed its input")
	}
}

func TestRawQEMURefusesBadInput(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "peer")
	base := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(base, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	noDisk := slices.DeleteFunc(slices.Clone(polyvisorArgv), func(a string) bool { return strings.HasPrefix(a, rootDrive) })
	qemu := slices.Clone(polyvisorArgv)
	qemu[0] = "/proc/self/exe" // a file that exists
	for _, c := range []struct {
		name string
		vm   *VMEnv
		want string
	}{
		{"no VM", nil, "VMEnvOf"},
		{"no QEMU", &VMEnv{Argv: polyvisorArgv[1:], Base: base}, "Env.VM.Argv[0]"},
		{"no root disk", &VMEnv{Argv: append([]string{"/proc/self/exe"}, noDisk[1:]...), Base: base}, "no root drive"},
		{"no base", &VMEnv{Argv: qemu, Base: base + ".missing"}, "Env.VM.Base"},
	} {
		m := NewRawQEMU()
		err := m.Setup(ctx, Env{Dir: dir, VM: c.vm})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: setup: %v, want one line naming %s", c.name, err, c.want)
		}
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("%s: close after a failed setup: %v", c.name, err)
		}
	}
	m := NewRawQEMU()
	if err := m.Setup(ctx, Env{Dir: dir, VM: &VMEnv{Argv: qemu, Base: base}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(ctx, "../x"); err == nil || !strings.Contains(err.Error(), "guest id") {
		t.Errorf("create ../x: %v, want the guest id refused", err)
	}
	if err := m.Start(ctx, "nothing"); err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Errorf("start of a guest never created: %v", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireEmptyDir(t, dir)
}
