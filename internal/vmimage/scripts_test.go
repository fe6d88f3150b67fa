package vmimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// TestScriptsParse checks the initramfs's /init and the disk's sysinit with busybox sh -n,
// the shell that runs them.
func TestScriptsParse(t *testing.T) {
	hostreq.Need(t, "busybox")
	for name, script := range map[string]string{
		"init":    initScript([]string{"virtio_mmio", "ext4"}),
		"sysinit": sysinitScript,
	} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("busybox", "sh", "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v: %s", name, err, out)
		}
	}
	if init := initScript([]string{"virtio_mmio", "ext4"}); !strings.Contains(init, "for module in virtio_mmio ext4; do") {
		t.Errorf("/init does not load the modules in order:\n%s", init)
	}
}

func TestVMInittab(t *testing.T) {
	tab := vmInittab("ttyAMA0", "/bin/bash", true, true)
	for _, want := range []string{
		"::sysinit:/usr/lib/polyvisor/sysinit\n",
		"::respawn:" + agentCommand + "\n",
		"ttyAMA0::respawn:-/bin/bash\n",
		"::respawn:/bin/busybox acpid -f -c /etc/acpi -p /run/acpid.pid\n",
		"::ctrlaltdel:/sbin/reboot\n",
		"::shutdown:/bin/sync\n",
		"::shutdown:/bin/umount -a -r\n",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("inittab lacks %q:\n%s", want, tab)
		}
	}
	// The agent's command parses, and serves the virtio port unless ttyS1 is a UART.
	if out, err := exec.Command("busybox", "sh", "-n", "-c", strings.Trim(strings.TrimPrefix(agentCommand, "/bin/sh -c "), "'")).CombinedOutput(); err != nil || !strings.Contains(agentCommand, "exec /usr/sbin/polyvisor-agent --port /dev/ttyS1;") {
		t.Errorf("agent command %s: %v %s", agentCommand, err, out)
	}
	if tab := vmInittab("ttyS0", "/bin/sh", false, false); strings.Contains(tab, "polyvisor-agent") || strings.Contains(tab, "acpid") {
		t.Errorf("inittab without agent and power button starts them:\n%s", tab)
	}
}

func TestDiskSizeLeavesRoomAndRoundsToMiB(t *testing.T) {
	for tree, want := range map[int64]int64{
		0:         64 << 20,
		1:         65 << 20,
		200 << 20: 364 << 20,
	} {
		if got := diskSize(tree); got != want {
			t.Errorf("diskSize(%d) = %d, want %d", tree, got, want)
		}
	}
}
