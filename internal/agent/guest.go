package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/term"
)

// Version is the agent's version, reported to the host in HelloAck.
const Version = "0.1.0"

// PortName is the name of the virtio-serial port the agent serves, as the
// host's QEMU command line gives it (virtserialport,name=PortName).
const PortName = "org.polyvisor.agent"

// Delays of the agent's retry loops.
const (
	// portRetry is how often the agent looks for its port: virtio_console
	// may be a module that the guest's init loads late.
	portRetry = time.Second
	// hostAbsentPoll is how long the agent waits before reading again
	// after end-of-file: a virtio-serial port reads as end-of-file, at
	// once and every time, while no host is connected to its chardev.
	hostAbsentPoll = 250 * time.Millisecond
)

// Config says where the agent serves.
type Config struct {
	// Port is the device to serve on. Empty means the virtio-serial port
	// named PortName, found through sysfs.
	Port string
	// Log receives the agent's diagnostics; nil discards them.
	Log *slog.Logger

	// sysPorts and devDir are where ports are looked up: tests move them.
	sysPorts string
	devDir   string
}

// Run serves the host on the agent's port until ctx ends. It never gives
// up on its own: a missing port is looked for again every second, and a
// port that fails is opened again, so that a guest's init can start the
// agent once and forget it. Commands it started are killed before it
// returns.
func Run(ctx context.Context, cfg Config) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.sysPorts == "" {
		cfg.sysPorts = "/sys/class/virtio-ports"
	}
	if cfg.devDir == "" {
		cfg.devDir = "/dev"
	}
	info := localInfo()
	cfg.Log.Info("polyvisor-agent starting", "version", info.Version, "arch", info.Arch)
	for {
		port, err := openPort(ctx, cfg)
		if err != nil {
			return // ctx ended
		}
		cfg.Log.Info("serving", "port", port.Name())
		err = serve(ctx, port, cfg.Log)
		port.Close()
		if ctx.Err() != nil {
			return
		}
		cfg.Log.Error("port failed, opening it again", "port", port.Name(), "err", err)
		if sleep(ctx, portRetry) != nil {
			return
		}
	}
}

// serve reads frames from port until it fails or ctx ends.
func serve(ctx context.Context, port *os.File, log *slog.Logger) error {
	l := newLink(port, log)
	// A serial line (UML's, Bochs's) may be paced by the host through
	// LinkAck; a virtio-serial port needs no pacing.
	control(port, func(fd int) error {
		l.linkAcks = term.IsTerminal(fd)
		return nil
	})
	defer l.dropAll()
	// Closing the port is what interrupts a read blocked in it.
	stop := context.AfterFunc(ctx, func() { port.Close() })
	defer stop()
	l.announce()

	dec := newDecoder()
	buf := make([]byte, 64<<10)
	var total uint64 // bytes read from the port
	for {
		n, err := port.Read(buf)
		if n > 0 {
			total += uint64(n)
			dec.feed(buf[:n])
			for {
				f, ok, skipped := dec.next()
				if skipped > 0 {
					log.Debug("skipped bytes out of step", "bytes", skipped)
				}
				if !ok {
					break
				}
				l.pos = total - uint64(dec.pending())
				l.handle(f)
			}
			l.ackRead(total)
		}
		switch {
		case errors.Is(err, io.EOF):
			// No host on the other end (see hostAbsentPoll): whatever
			// it was running is orphaned, and the next host will say
			// Hello from a fresh start.
			l.hostGone()
			dec.reset()
			if err := sleep(ctx, hostAbsentPoll); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("read %s: %w", port.Name(), err)
		}
	}
}

// sleep waits for d or until ctx ends, and then returns ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
