package uml

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/guestnet"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Inside the guest: its console, its agent's serial line and the agent.
const (
	consoleDevice = "tty0"       // con0, the monitor's console pty
	agentDevice   = "/dev/ttyS1" // ssl1, the monitor's agent serial
)

// inittab is /etc/inittab in a UML guest's image: busybox init runs the
// VM sysinit script, the agent on its serial line, the DHCP launcher and a
// shell on the console; poweroff (the agent's clean halt) makes the kernel
// exit.
func inittab(shell string) string {
	return "# Written by polyvisor for busybox init under User-Mode Linux.\n" +
		"::sysinit:" + vmimage.Sysinit + "\n" +
		"::respawn:" + vmimage.GuestAgent + " --port " + agentDevice + "\n" +
		guestnet.InittabLine +
		consoleDevice + "::respawn:-" + shell + "\n" +
		"::shutdown:/bin/sync\n" +
		"::shutdown:/bin/umount -a -r\n"
}

// RootSize is the size of every uml guest's root disk: the template's
// image is a sparse file of that size, so that what a guest writes fits
// in its COW file, which cannot outgrow the image it lies over.
const RootSize = 4 << 30

// template finds the container template a guest was made from.
func (d *Driver) template(def *guest.Definition) (*api.Template, error) {
	t, err := d.templates.Find(def.Template, template.TypeContainer, def.Arch)
	if err != nil {
		return nil, err
	}
	if t.Process != nil {
		return nil, fmt.Errorf("%w: template %s was imported from an OCI image and runs %v, not an init: uml guests boot busybox or Debian templates", api.ErrInvalid, t.ID, t.Process.Args)
	}
	return t, nil
}

// imagePath is where the template's UML image lives: in the template's
// own directory (so it goes with the template), named by the template's
// digest and the disk's size (so a rebuilt template, or a polyvisor that
// sizes disks otherwise, never boots a stale image).
func (d *Driver) imagePath(t *api.Template) string {
	digest := strings.TrimPrefix(t.Digest, "sha256:")
	if len(digest) > 16 {
		digest = digest[:16]
	}
	return filepath.Join(d.templates.Dir, t.ID, fmt.Sprintf("uml-%s-%dg.ext4", digest, RootSize>>30))
}

// rootImage returns the template's ext4 image for UML guests, building it
// the first time: a copy of the template's tree with owners shifted back
// to the guest's ids, the agent, an inittab for UML and the DHCP
// launcher added, filled into a raw ext4 image by mke2fs -d. It is
// read-only once built; every guest's COW file lies over it. Two builders
// (two daemons, say) each build in a directory of their own and rename
// the result into place: the later rename replaces an identical image.
func (d *Driver) rootImage(ctx context.Context, t *api.Template) (string, error) {
	path := d.imagePath(t)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	d.images.Lock()
	defer d.images.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	began := time.Now()
	agent := filepath.Join(filepath.Dir(d.opts.Monitor), template.AgentName("amd64"))
	if _, err := os.Stat(agent); err != nil {
		return "", fmt.Errorf("guest agent for amd64 not found at %s: run make build", agent)
	}
	staging, err := os.MkdirTemp(filepath.Dir(path), ".uml-build-")
	if err != nil {
		return "", fmt.Errorf("build uml image of %s: %w", t.ID, err)
	}
	defer os.RemoveAll(staging)
	rootfs := filepath.Join(staging, "rootfs")
	// The template's tree is stored shifted to the containers' id map; the
	// guest's kernel sees the image's owners as they are.
	if err := idmap.CopyTree(ctx, d.templates.Rootfs(t.ID), rootfs, idmap.ShiftDown(idmap.Default())); err != nil {
		return "", fmt.Errorf("build uml image of %s: %w", t.ID, err)
	}
	if err := prepareTree(rootfs, agent); err != nil {
		return "", fmt.Errorf("build uml image of %s: %w", t.ID, err)
	}
	if err := template.InstallProbe(rootfs, filepath.Dir(agent), "amd64"); err != nil {
		return "", fmt.Errorf("build uml image of %s: %w", t.ID, err)
	}
	raw := filepath.Join(staging, "root.ext4")
	if _, err := vmimage.WriteExt4(ctx, rootfs, raw, RootSize); err != nil {
		return "", fmt.Errorf("build uml image of %s: %w", t.ID, err)
	}
	if err := os.Rename(raw, path); err != nil {
		return "", fmt.Errorf("build uml image of %s: %w", t.ID, err)
	}
	d.log.Info("built uml root image", "template", t.ID, "image", path, "duration", time.Since(began).Round(time.Millisecond))
	return path, nil
}

// prepareTree makes the tree bootable under UML by busybox init.
func prepareTree(rootfs, agent string) error {
	if err := vmimage.PrepareRootTree(rootfs, consoleDevice, agent); err != nil {
		return err
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	shell := "/bin/sh"
	if _, err := root.Stat("bin/bash"); err == nil {
		shell = "/bin/bash"
	}
	if err := root.WriteFile("etc/inittab", []byte(inittab(shell)), 0o644); err != nil {
		return fmt.Errorf("write /etc/inittab: %w", err)
	}
	// init is busybox's in both templates; a tree whose /sbin/init is
	// something else would ignore the inittab.
	if _, err := root.Lstat("sbin/init"); errors.Is(err, fs.ErrNotExist) {
		if err := root.Symlink("/bin/busybox", "sbin/init"); err != nil {
			return fmt.Errorf("link /sbin/init to busybox: %w", err)
		}
	}
	return nil
}
