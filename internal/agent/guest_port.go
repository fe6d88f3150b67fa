package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// errNoPort is returned when no virtio-serial port has the agent's name.
var errNoPort = errors.New("no virtio-serial port named " + PortName)

// openPort opens the agent's port, looking again every portRetry while it
// is missing or cannot be opened. It fails only when ctx ends.
func openPort(ctx context.Context, cfg Config) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		path := cfg.Port
		var err error
		if path == "" {
			path, err = findPort(cfg.sysPorts, cfg.devDir, PortName)
		}
		var port *os.File
		if err == nil {
			port, err = openDevice(path)
		}
		if err == nil {
			return port, nil
		}
		// Said once, then twice a minute: this goes to the console.
		if attempt%30 == 0 {
			cfg.Log.Warn("agent port not available yet, retrying every second", "err", err)
		}
		if err := sleep(ctx, portRetry); err != nil {
			return nil, err
		}
	}
}

// findPort returns the device of the virtio-serial port called name: the
// port whose sysPorts/vportNpM/name file holds it. When devDir has no node
// for it (no devtmpfs), findPort makes one from the port's sysfs dev file.
func findPort(sysPorts, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysPorts)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("list virtio ports: %w", err)
	}
	for _, e := range entries {
		got, err := os.ReadFile(filepath.Join(sysPorts, e.Name(), "name"))
		if err != nil || strings.TrimSpace(string(got)) != name {
			continue
		}
		dev := filepath.Join(devDir, e.Name())
		if _, err := os.Stat(dev); errors.Is(err, fs.ErrNotExist) {
			if err := makeNode(filepath.Join(sysPorts, e.Name(), "dev"), dev); err != nil {
				return "", err
			}
		}
		return dev, nil
	}
	return "", errNoPort
}

// makeNode creates the character device dev from a sysfs "MAJOR:MINOR" file.
func makeNode(sysDev, dev string) error {
	b, err := os.ReadFile(sysDev)
	if err != nil {
		return fmt.Errorf("read device number of %s: %w", dev, err)
	}
	majorStr, minorStr, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	major, err1 := strconv.ParseUint(majorStr, 10, 32)
	minor, err2 := strconv.ParseUint(minorStr, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("device number %q of %s: %w", b, dev, errNoPort)
	}
	if err := unix.Mknod(dev, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(major), uint32(minor)))); err != nil {
		return fmt.Errorf("make device node %s: %w", dev, err)
	}
	return nil
}

// openDevice opens the port for reading and writing. A terminal (a serial
// line, or the pty tests use) is switched to raw mode so that it carries
// bytes unchanged; a virtio-serial port is not a terminal and carries
// them unchanged anyway.
func openDevice(path string) (*os.File, error) {
	port, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open agent port: %w", err)
	}
	if err := makeRaw(port); err != nil {
		port.Close()
		return nil, fmt.Errorf("agent port %s: %w", path, err)
	}
	return port, nil
}

// makeRaw puts f in raw mode, as cfmakeraw(3) does, when it is a
// terminal. It goes through control because f.Fd() would switch f to
// blocking mode, where closing it no longer interrupts a read.
func makeRaw(f *os.File) error {
	return control(f, makeFdRaw)
}

// makeFdRaw is makeRaw on a descriptor; fd not being a terminal is no
// error.
func makeFdRaw(fd int) error {
	if !term.IsTerminal(fd) {
		return nil
	}
	if _, err := term.MakeRaw(fd); err != nil {
		return fmt.Errorf("set raw mode: %w", err)
	}
	return nil
}
