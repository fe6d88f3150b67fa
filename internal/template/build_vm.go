package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// AgentName is the file name of the guest agent built for goarch, as
// `make build` leaves it beside polyvisor.
func AgentName(goarch string) string { return "polyvisor-agent-" + goarch }

// finishVM turns the root tree built in staging/rootfs into a VM
// template's files (kernel, initrd, root disk) and describes them in t.
// The tree itself is dropped: the root disk holds it.
func (s Store) finishVM(ctx context.Context, req Resolved, staging string, t *api.Template, progress Progress) error {
	agent := filepath.Join(s.AgentDir, AgentName(req.Arch.GOARCH))
	if _, err := os.Stat(agent); err != nil {
		return fmt.Errorf("guest agent for %s not found at %s: run make build", req.Arch.Debian, agent)
	}
	rootfs := filepath.Join(staging, "rootfs")
	boot, err := vmimage.Build(ctx, vmimage.Spec{Rootfs: rootfs, Arch: req.Arch.Debian, OutDir: staging, CacheDir: s.cacheDir(), Agent: agent, Firmware: req.Firmware}, progress)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return err
	}
	t.Boot = &api.TemplateBoot{
		Kernel: boot.Kernel, Initrd: boot.Initrd, Disk: boot.Disk, Cmdline: boot.Cmdline,
		Machine: boot.Machine, Console: boot.Console, QEMU: boot.QEMU, KernelVersion: boot.KernelVersion, Firmware: boot.Firmware, MinMemory: boot.MinMemory,
	}
	progress("computing digest", 0, 0)
	return describeVMFiles(ctx, staging, t)
}

// describeVMFiles records the digest and size of the files t.Boot names
// in dir.
func describeVMFiles(ctx context.Context, dir string, t *api.Template) error {
	boot := t.Boot
	sum := sha256.New()
	t.Size = 0
	for _, name := range []string{boot.Kernel, boot.Initrd, boot.Disk} {
		if name == "" {
			continue // booted by firmware: the kernel and initrd are inside the disk
		}
		path := filepath.Join(dir, name)
		fileSum, err := FileSHA256(ctx, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(sum, "%s %s\n", name, fileSum)
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		t.Size += info.Size()
	}
	t.Digest = "sha256:" + hex.EncodeToString(sum.Sum(nil))
	return nil
}
