package peer

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// polyvisorArgv is the shape of the argv polyvisor gives a busybox VM.
var polyvisorArgv = []string{
	"/usr/bin/qemu-system-x86_64", "-name", "pv-bench-peer-qemu",
	"-machine", "microvm,accel=tcg", "-smp", "2", "-m", "512",
	"-kernel", "/state/templates/busybox-vm-amd64/vmlinuz",
	"-drive", "id=root,file=/state/guests/g/root.qcow2,format=qcow2,if=none,discard=unmap",
	"-device", "virtio-blk-device,drive=root,bootindex=1",
	"-chardev", "socket,id=agent,path=/run/polyvisor-x/g/agent.sock,server=on,wait=off",
	"-chardev", "stdio,id=console,signal=off",
	"-serial", "chardev:console",
	"-qmp", "unix:/run/polyvisor-x/g/qmp.sock,server=on,wait=off",
}

func TestQEMUArgs(t *testing.T) {
	got := QEMUArgs(polyvisorArgv, "/tmp/peer", "/tmp/peer/root.qcow2")
	want := slices.Clone(polyvisorArgv)
	want[12] = "id=root,file=/tmp/peer/root.qcow2,format=qcow2,if=none,discard=unmap"
	want[16] = "socket,id=agent,path=/tmp/peer/agent.sock,server=on,wait=off"
	want[18] = "file,id=console,path=/tmp/peer/console.log"
	want[22] = "unix:/tmp/peer/qmp.sock,server=on,wait=off"
	if !slices.Equal(got, want) {
		t.Errorf("QEMUArgs:\n%q\nwant\n%q", got, want)
	}
	for _, a := range got {
		if strings.Contains(a, "/run/polyvisor-x") || strings.Contains(a, "/state/guests") {
			t.Errorf("%q still points at the guest's files", a)
		}
	}
	if polyvisorArgv[12] != "id=root,file=/state/guests/g/root.qcow2,format=qcow2,if=none,discard=unmap" {
		t.Error("QEMUArgs changed its input")
	}
}

func TestRootDisk(t *testing.T) {
	if got := RootDisk(polyvisorArgv); got != "/state/guests/g/root.qcow2" {
		t.Errorf("RootDisk = %q", got)
	}
	if got := RootDisk([]string{"qemu-system-x86_64", "-m", "512"}); got != "" {
		t.Errorf("RootDisk of an argv without disk = %q", got)
	}
}

func TestInstalled(t *testing.T) {
	for _, name := range Names {
		_, lookErr := hostreq.Lookup(Binary(name))
		err := Installed(name)
		if (err == nil) != (lookErr == nil) {
			t.Errorf("Installed(%s) = %v, but the host's look-up says %v", name, err, lookErr)
		}
		if err != nil && (!errors.Is(err, hostreq.ErrMissing) || !strings.Contains(err.Error(), "is not installed: bench's")) {
			t.Errorf("Installed(%s) = %v, want the requirement's message", name, err)
		}
	}
}
