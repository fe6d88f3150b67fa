package peer

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/libvirtd"
	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// virshDaemon is the virsh peer's private libvirtd (internal/libvirtd:
// namespaces of its own, every file under Env.Dir), and the virsh that
// drives it.
type virshDaemon struct {
	*libvirtd.Daemon
	virshPath string
}

// startLibvirtd starts a libvirtd under dir that knows the emulator (a
// path) alone, and returns once it answers.
func startLibvirtd(ctx context.Context, dir, emulator string) (_ *virshDaemon, err error) {
	virshPath, err := hostreq.Lookup("virsh")
	if err != nil {
		return nil, fmt.Errorf("virsh: %w", err)
	}
	d, err := libvirtd.Start(ctx, libvirtd.Options{Dir: dir, Programs: []string{emulator}})
	if err != nil {
		return nil, fmt.Errorf("virsh: %w", err)
	}
	l := &virshDaemon{Daemon: d, virshPath: virshPath}
	// The socket listens before the drivers are ready; a call waits for them.
	if _, err := l.virsh(ctx, "uri"); err != nil {
		l.Stop()
		return nil, fmt.Errorf("virsh: libvirtd does not answer: %w (libvirtd: %s)", err, l.LastError())
	}
	return l, nil
}

// virsh runs one virsh command against the daemon and returns its output;
// its error is the command and virsh's last words.
func (l *virshDaemon) virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.virshPath, append([]string{"-q", "-c", l.URI()}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, runcmd.LastLines(stderr.String(), 2))
	}
	return stdout.String(), nil
}

// stop ends libvirtd; its guests must have been destroyed first.
func (l *virshDaemon) stop() error {
	if err := l.Stop(); err != nil {
		return fmt.Errorf("virsh: %w", err)
	}
	return nil
}

// removeCgroups removes the cgroups libvirt made for domains.
func (l *virshDaemon) removeCgroups(domains []string) error {
	return l.RemoveCgroups(func(domain string) bool { return slices.Contains(domains, domain) })
}
