package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// AgentName is the file name of the guest agent built for goarch, as
// `make build` leaves it beside polyvisor.
func AgentName(goarch string) string { return "polyvisor-agent-" + goarch }

// ProbeName is the file name of bench's probe built for goarch, beside
// the agent.
func ProbeName(goarch string) string { return "polyvisor-probe-" + goarch }

// GuestProbe is where a template a guest boots from its own kernel (a VM's,
// a uml guest's) carries bench's probe, so that bench need not send it
// over a serial line that may carry 11 KiB/s (Bochs's UART).
const GuestProbe = "/usr/libexec/polyvisor-probe"

// InstallProbe copies the probe built for goarch from binDir into the
// tree rootfs at GuestProbe. A build without the probe installs none:
// bench then copies it in, as it does into containers.
func InstallProbe(rootfs, binDir, goarch string) error {
	src, err := os.Open(filepath.Join(binDir, ProbeName(goarch)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("install bench's probe: %w", err)
	}
	defer src.Close()
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return fmt.Errorf("install bench's probe: %w", err)
	}
	defer root.Close()
	dst := strings.TrimPrefix(GuestProbe, "/")
	if err := root.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install bench's probe: %w", err)
	}
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err == nil {
		_, err = io.Copy(out, src)
		err = errors.Join(err, out.Chmod(0o755), out.Close())
	}
	if err != nil {
		return fmt.Errorf("install bench's probe: %w", err)
	}
	return nil
}

// finishVM turns the root tree built in staging/rootfs into a VM
// template's files (kernel, initrd, root disk) and describes them in t.
// The tree itself is dropped: the root disk holds it.
func (s Store) finishVM(ctx context.Context, req Resolved, staging string, t *api.Template, progress Progress) error {
	agent := filepath.Join(s.AgentDir, AgentName(req.Arch.GOARCH))
	if _, err := os.Stat(agent); err != nil {
		return fmt.Errorf("guest agent for %s not found at %s: run make build", req.Arch.Debian, agent)
	}
	rootfs := filepath.Join(staging, "rootfs")
	if err := InstallProbe(rootfs, s.AgentDir, req.Arch.GOARCH); err != nil {
		return err
	}
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
