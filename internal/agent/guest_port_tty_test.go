package agent

import (
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestOpenDeviceMakesATerminalRaw serves a serial line as UML's ssl1 or
// Bochs's com2 give it: a terminal in the line discipline's default,
// cooked mode, which would turn the agent's "\n" bytes into "\r\n", echo
// the host's frames back and take ^C or ^D in a payload for signals and
// end-of-file. The agent must switch it to raw mode itself.
func TestOpenDeviceMakesATerminalRaw(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	cooked, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if cooked.Lflag&unix.ICANON == 0 || cooked.Oflag&unix.OPOST == 0 {
		t.Fatalf("a new pty is not cooked: lflag %#x oflag %#x", cooked.Lflag, cooked.Oflag)
	}
	port, err := openDevice(slave.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	raw, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG|unix.IEXTEN) != 0 || raw.Oflag&unix.OPOST != 0 ||
		raw.Iflag&(unix.ICRNL|unix.IXON|unix.ISTRIP) != 0 || raw.Cflag&unix.CSIZE != unix.CS8 {
		t.Fatalf("after openDevice: iflag %#x oflag %#x lflag %#x cflag %#x, want raw (cfmakeraw)", raw.Iflag, raw.Oflag, raw.Lflag, raw.Cflag)
	}
	// Bytes pass both ways unchanged.
	if _, err := port.Write([]byte("a\nb\x03")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := master.Read(buf)
	if err != nil || string(buf[:n]) != "a\nb\x03" {
		t.Fatalf("the host read %q, %v", buf[:n], err)
	}
	if _, err := master.Write([]byte("\x04x\n\x1a")); err != nil {
		t.Fatal(err)
	}
	n, err = port.Read(buf)
	if err != nil || string(buf[:n]) != "\x04x\n\x1a" {
		t.Fatalf("the agent read %q, %v", buf[:n], err)
	}
}
