package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// fakeSysfs makes a /sys/class/virtio-ports look-alike with the given
// port names, and an empty /dev.
func fakeSysfs(t *testing.T, names map[string]string) (sysPorts, devDir string) {
	t.Helper()
	root := t.TempDir()
	sysPorts, devDir = filepath.Join(root, "virtio-ports"), filepath.Join(root, "dev")
	os.MkdirAll(devDir, 0o755)
	for port, name := range names {
		os.MkdirAll(filepath.Join(sysPorts, port), 0o755)
		os.WriteFile(filepath.Join(sysPorts, port, "name"), []byte(name+"\n"), 0o644)
		os.WriteFile(filepath.Join(sysPorts, port, "dev"), []byte("1:3\n"), 0o644) // /dev/null's numbers
	}
	return sysPorts, devDir
}

func TestFindPortByName(t *testing.T) {
	sysPorts, devDir := fakeSysfs(t, map[string]string{"vport0p1": "org.qemu.guest_agent.0", "vport0p2": PortName})
	os.WriteFile(filepath.Join(devDir, "vport0p2"), nil, 0o600)
	got, err := findPort(sysPorts, devDir, PortName)
	if err != nil || got != filepath.Join(devDir, "vport0p2") {
		t.Fatalf("found %q, %v", got, err)
	}
	if _, err := findPort(sysPorts, devDir, "org.example.other"); !errors.Is(err, errNoPort) {
		t.Fatalf("missing port: %v", err)
	}
	if _, err := findPort(filepath.Join(sysPorts, "absent"), devDir, PortName); !errors.Is(err, errNoPort) {
		t.Fatalf("no virtio-ports directory (module not loaded): %v", err)
	}
}

func TestFindPortMakesAMissingDeviceNode(t *testing.T) {
	testgate.RequireRoot(t, "making a device node needs root")
	sysPorts, devDir := fakeSysfs(t, map[string]string{"vport1p1": PortName})
	got, err := findPort(sysPorts, devDir, PortName)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(got)
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("node %s: %v %v", got, fi.Mode(), err)
	}
}

func TestRunWaitsForItsPort(t *testing.T) {
	sysPorts, devDir := fakeSysfs(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	Run(ctx, Config{Log: testLogger(t), sysPorts: sysPorts, devDir: devDir})
	if time.Since(start) < time.Second {
		t.Fatal("run returned before its context ended")
	}
}
