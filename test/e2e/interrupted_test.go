package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// processesNaming returns the command lines of live processes with an
// argument in dir.
func processesNaming(dir string) []string {
	var found []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(data), "\x00") {
			if arg == dir || strings.Contains(arg, dir+"/") {
				found = append(found, strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", " "))
				break
			}
		}
	}
	return found
}

// requireNothingLeftOf fails t if anything of guest name lives on: a
// process, a mount, a cgroup, its directory.
func requireNothingLeftOf(t *testing.T, d *testenv.Daemon, name string) {
	t.Helper()
	l := layout.New(d.StateDir)
	if left := processesNaming(l.GuestRunDir(name)); len(left) > 0 {
		t.Errorf("processes of %s live on: %q", name, left)
	}
	if mounted(t, filepath.Join(l.GuestDir(name), "rootfs")) {
		t.Errorf("the root tree of %s is still mounted", name)
	}
	if dirs := existing(testenv.CgroupDirs(l.GuestCgroup(name))); len(dirs) > 0 {
		t.Errorf("cgroups of %s survive: %v", name, dirs)
	}
}

// TestAnInterruptedLaunchOrStartIsRolledBack: a daemon killed after a
// container's processes started but before it recorded them used to leave
// the container running unadopted, under a guest listed as stopped (or a
// guest the failed launch should not have left). The next daemon ends
// them: an interrupted launch leaves nothing, an interrupted start a
// stopped guest that starts again.
func TestAnInterruptedLaunchOrStartIsRolledBack(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t, "--inject-fault", "crash:start-after-boot")
	d.Must(t, "create", "busybox", "restarted")
	if _, _, code := d.Run("launch", "busybox", "launched"); code == 0 {
		t.Fatal("launch succeeded although the daemon died in it")
	}
	d.Kill()
	if err := d.RestartWith("--default-network", "none", "--inject-fault", "crash:start-after-boot"); err != nil {
		t.Fatal(err)
	}
	if _, _, code := d.Run("start", "restarted"); code == 0 {
		t.Fatal("start succeeded although the daemon died in it")
	}
	d.Kill()
	if err := d.RestartWith("--default-network", "none"); err != nil {
		t.Fatal(err)
	}
	if _, _, code := d.Run("info", "launched"); code == 0 {
		t.Errorf("the guest whose launch failed is still there: %s", d.Must(t, "list"))
	}
	if _, err := os.Stat(layout.New(d.StateDir).GuestDir("launched")); err == nil {
		t.Error("the directory of the guest whose launch failed is still there")
	}
	requireNothingLeftOf(t, d, "launched")
	if g := info(t, d, "restarted"); g.State != api.StateStopped {
		t.Errorf("after an interrupted start: %+v, want stopped", g)
	}
	requireNothingLeftOf(t, d, "restarted")
	d.Must(t, "start", "restarted")
	if out := d.Must(t, "exec", "restarted", "--", "echo", "again"); out != "again\n" {
		t.Errorf("exec after the start: %q", out)
	}
	d.Must(t, "delete", "--force", "restarted")
}

// TestADaemonKilledDuringAVMsBootLeavesNoQEMU: killing the daemon while a
// VM it launches boots used to leave QEMU and its monitor running, never
// adopted, on a guest listed as stopped, whose delete then left QEMU on a
// deleted disk. The next daemon ends them and removes the guest.
func TestADaemonKilledDuringAVMsBootLeavesNoQEMU(t *testing.T) {
	requireRoot(t)
	d := ownDaemonWithVM(t)
	runDir := layout.New(d.StateDir).GuestRunDir("booting")
	launch := exec.Command(filepath.Join(d.BinDir, "polyvisor"), "--socket", d.Socket, "launch", "busybox", "booting", "--type", "vm")
	if err := launch.Start(); err != nil {
		t.Fatal(err)
	}
	defer launch.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for !qemuRuns(runDir) {
		if time.Now().After(deadline) {
			t.Fatal("QEMU of the launched VM did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Kill() // mid-boot: the agent has not answered yet
	if err := launch.Wait(); err == nil {
		t.Error("the launch succeeded although the daemon died during it")
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	requireNothingLeftOf(t, d, "booting")
	if _, _, code := d.Run("info", "booting"); code == 0 {
		t.Errorf("the VM whose launch was interrupted is still listed: %s", d.Must(t, "list"))
	}
}

// qemuRuns reports whether a QEMU naming runDir runs.
func qemuRuns(runDir string) bool {
	for _, cmdline := range processesNaming(runDir) {
		if strings.Contains(cmdline, "qemu-system") {
			return true
		}
	}
	return false
}

// TestDeleteForceEndsEveryProcessOfTheGuest: delete --force stopped the
// processes the definition names, and returned 0 while another process of
// the guest (one naming its run dir, as a QEMU or monitor the daemon lost
// track of would) lived on over its deleted files. Now it ends them and
// succeeds only once they are gone; a plain delete of a stopped guest with
// such a process is refused.
func TestDeleteForceEndsEveryProcessOfTheGuest(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "doomed")
	d.Must(t, "create", "busybox", "kept")
	l := layout.New(d.StateDir)
	stray := func(name string) *exec.Cmd {
		// argv[0] in the guest's run dir, as QEMU's -qmp or a monitor's
		// --dir would name it.
		if err := os.MkdirAll(l.GuestRunDir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "-c", `exec -a "$0" sleep 600`, filepath.Join(l.GuestRunDir(name), "stray"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(5 * time.Second)
		for len(processesNaming(l.GuestRunDir(name))) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return cmd
	}
	kept := stray("kept")
	if _, errOut, code := d.Run("delete", "kept"); code == 0 || !strings.Contains(errOut, "still runs") {
		t.Errorf("delete of a stopped guest with a live process: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(l.GuestDir("kept")); err != nil {
		t.Errorf("the refused delete removed the guest: %v", err)
	}
	kept.Process.Kill()
	kept.Wait()
	d.Must(t, "delete", "kept")

	doomed := stray("doomed")
	d.Must(t, "delete", "--force", "doomed")
	ended := make(chan error, 1)
	go func() { ended <- doomed.Wait() }()
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Errorf("delete --force returned 0 while process %d of the guest lives", doomed.Process.Pid)
	}
	requireNothingLeftOf(t, d, "doomed")
}
