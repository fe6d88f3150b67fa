package vmimage_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// unameMachine is what uname -m says in a guest of each Debian architecture.
var unameMachine = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

func TestBusyboxVMBoots(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			b := sharedTemplate(t, "busybox", arch)
			var times []time.Duration
			var g *guest
			var afterBoot int
			for range 3 {
				g = startGuest(t, b.dir, b.boot, newOverlay(t, b.dir, b.boot), "")
				took, booted := g.waitFor(vmimage.BootedMarker, 0)
				afterBoot = booted
				times = append(times, took)
				if len(times) < 3 {
					g.cmd.Process.Kill()
					<-g.exited
				}
			}
			slices.Sort(times)
			t.Logf("%s: boot to %s: median %v of %v", arch, vmimage.BootedMarker, times[1].Round(10*time.Millisecond), times)
			t.Logf("QEMU command line: %s %s", b.boot.QEMU, strings.Join(qemuArgs(b.dir, b.boot, "OVERLAY", ""), " "))

			g.waitFor(growRootMarker, 0)
			g.waitFor(agentMarker, 0)
			_, at := g.waitFor("# ", afterBoot)
			out, _ := g.run("uname -m; cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' '; echo; cat /sys/class/virtio-ports/*/name; grep ' / ' /proc/mounts; cat /proc/cmdline; date", at)
			t.Logf("guest says:\n%s", out)
			for _, want := range []string{unameMachine[arch] + "\n", "org.polyvisor.agent\n", "/dev/vda / ext4 rw", "virtio_blk", "ext4"} {
				if !strings.Contains(out, want) {
					t.Errorf("guest output lacks %q", want)
				}
			}
			// The power key: acpid answers it with poweroff, busybox init runs the shutdown
			// actions and powers the machine off. (TestDebianVMBoots types poweroff.)
			start := time.Now()
			t.Logf("system_powerdown: %s", g.qmp("system_powerdown"))
			if _, err := g.waitExit(30 * time.Second); err != nil {
				t.Errorf("system_powerdown: %v", err)
			} else {
				t.Logf("%s: QEMU exited %v after system_powerdown", arch, time.Since(start).Round(10*time.Millisecond))
			}
		})
	}
}

func TestCanaryBootsKernelAndInitrdAlone(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			b := sharedTemplate(t, "busybox", arch)
			g := startGuest(t, b.dir, b.boot, "", vmimage.CanaryFlag)
			took, _ := g.waitFor(vmimage.CanaryMarker, 0)
			exited, err := g.waitExit(30 * time.Second)
			if err != nil {
				t.Fatalf("after the canary marker: %v", err)
			}
			t.Logf("%s canary: marker after %v, QEMU exited by itself after %v", arch, took.Round(10*time.Millisecond), exited.Round(10*time.Millisecond))
		})
	}
}

func TestInitrdHoldsBusyboxModulesAndInit(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			b := sharedTemplate(t, "busybox", arch)
			out, err := exec.Command("sh", "-c", "gzip -dc < "+b.dir+"/"+b.boot.Initrd+" | cpio -itv --quiet").CombinedOutput()
			if err != nil {
				t.Fatalf("list initrd: %v: %s", err, out)
			}
			var modules []string
			for _, line := range strings.Split(string(out), "\n") {
				fields := strings.Fields(line)
				if len(fields) > 0 && strings.HasPrefix(fields[len(fields)-1], "lib/modules/") && strings.HasSuffix(line, ".ko") {
					modules = append(modules, strings.TrimSuffix(strings.TrimPrefix(fields[len(fields)-1], "lib/modules/"), ".ko"))
				}
			}
			t.Logf("%s initrd modules: %s", arch, strings.Join(modules, " "))
			for _, want := range []string{"crw------- ", "dev/console", "bin/busybox", "init"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("initrd listing lacks %q:\n%s", want, out)
				}
			}
			for _, want := range []string{"virtio_mmio", "virtio_blk", "ext4", "jbd2", "mbcache", "crc16", "crc32c_generic", "virtio_console", "virtio_net", "evdev"} {
				if !slices.Contains(modules, want) {
					t.Errorf("initrd lacks module %s", want)
				}
			}
		})
	}
}
