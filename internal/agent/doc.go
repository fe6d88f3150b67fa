// Package agent is polyvisor's in-guest agent for VM guests and the host's
// client for it. polyvisor-agent (cmd/polyvisor-agent, a static binary
// built for each guest architecture) runs in the guest and serves Run; the
// daemon reaches it with Dial and runs commands with Client.Exec, so that
// `polyvisor exec` works alike in guests of every architecture.
//
// # Channel
//
// Host and guest share one virtio-serial port named PortName, which QEMU
// exposes on the host as a unix socket:
//
//	-chardev socket,id=agent,path=RUNDIR/agent.sock,server=on,wait=off
//	-device virtio-serial-device        (virtio-serial-pci on a PCI machine)
//	-device virtserialport,chardev=agent,name=org.polyvisor.agent
//
// The agent finds the port through /sys/class/virtio-ports/*/name and
// opens /dev/vportNpM. The channel is one byte stream with no connections
// in it: QEMU accepts one host client at a time, and the guest's port stays
// open across host clients. While no client is connected, the guest reads
// end-of-file (at once, every time) and its writes wait (so seen with QEMU
// 7.2 and Linux 6.1, x86_64 and aarch64 guests); a client that leaves and
// another that comes quickly may go unnoticed by the guest, and bytes in
// flight may be lost or be delivered to the next client. The protocol is
// built for that: every host connection starts with a handshake that both
// sides can find in a stream full of leftovers.
//
// # Frames
//
// Both directions carry frames:
//
//	[1 byte type][4 bytes session id][4 bytes payload length][payload]
//
// integers big-endian, payload at most MaxPayload (64 KiB). Session 0 is
// the connection's own; the host numbers its sessions from 1. Types:
//
//	1  Hello       host→guest  session 0: magic "polyvisor/agent1" + 16-byte random nonce
//	2  HelloAck    guest→host  session 0: magic + the Hello's nonce + GuestInfo as JSON
//	3  ExecStart   host→guest  ExecRequest as JSON; opens the session
//	4  Stdin       host→guest  input bytes
//	5  CloseStdin  host→guest  end of input (empty)
//	6  Resize      host→guest  rows, cols: two uint16
//	7  Stdout      guest→host  output bytes (all output, on a tty)
//	8  Stderr      guest→host  error output of a command without a tty
//	9  Exit        guest→host  int32 exit code (128+N for signal N); ends the session
//	10 Error       both        UTF-8 message; ends the session (host→guest: kill it)
//	11 Ping        host→guest  session 0: up to 64 bytes
//	12 Pong        guest→host  session 0: the Ping's bytes
//	13 Ack         both        uint32: bytes of Stdin (or Stdout+Stderr) consumed
//	14 LinkAck     both        session 0: host→guest: empty, "send LinkAcks"; guest→host: uint64 bytes read from the port since the end of the host's first Hello
//
// A frame is written with a single write under one lock per side, so
// frames never interleave (a paced host, below, writes a frame in pieces,
// but from its one writer).
//
// # Handshake and resynchronisation
//
// Dial connects to the socket and sends Hello every 500 ms until the
// HelloAck carrying its nonce arrives (the guest may still be booting).
// The host skips everything before that HelloAck: answers to an earlier
// connection's Hellos, output of its sessions, half frames. After it, the
// guest's frames are in step, because the agent writes whole frames under
// its lock and stops writing for old sessions before it sends the
// HelloAck.
//
// The agent starts out of step and drops bytes until it sees a Hello's
// signature (its header and the magic, 25 bytes). It watches for that
// signature everywhere, inside payloads too, so a Hello that arrives
// where the rest of a frame cut off by a disconnect was expected still
// resynchronises it at once. So that command input never looks like a
// Hello, the host ends a Stdin frame in the middle of any signature in it:
// the next frame's header then splits the signature in the stream (no
// other frame the host sends can hold one). A header with an unknown type or
// a length over MaxPayload puts the agent out of step until the next
// Hello; it never exits on a bad frame. A Hello with a new nonce kills
// every session of the previous connection (nobody can reach them any
// more) and opens a new one; a Hello repeating the current nonce is
// answered again and changes nothing. End-of-file on the port (no host)
// kills the sessions too.
//
// When the agent opens its port it sends a HelloAck with the zero nonce,
// which answers no Dial: a host client still connected to a previous agent
// (the guest rebooted, the agent restarted) sees it and fails its calls
// with ErrConnectionLost instead of waiting for sessions nobody runs.
//
// # Sessions and flow control
//
// ExecStart runs a command with os/exec, in a new session and process
// group: on a new pty sized rows x cols when tty is set, on pipes
// otherwise. Its environment is PATH (/usr/local/sbin:...:/bin), HOME,
// TERM=xterm on a tty, then the request's env; its directory is cwd or /.
// A command that cannot be started gets a message on Stderr and Exit 127
// (not found) or 126 (anything else), as a shell would. When the command
// exits, the agent sends what is left of its output (waiting at most a
// second for background processes that hold it) and then Exit. Error from
// the host, a new host connection or the host's absence kill the
// session's process group with SIGKILL, and no Exit follows.
//
// Every session has a window of 256 KiB in each direction: a sender may
// have that many Stdin (or Stdout+Stderr) bytes unacknowledged, and the
// receiver sends Ack once it has passed bytes on (written them to the
// command, or to the caller's writer). So a command that does not read,
// or a caller that does not drain, holds up its own session only, and the
// agent's reader never stops reading, which it must do to see a Hello.
//
// # Link pacing
//
// An agent whose port is a terminal says so in GuestInfo (link_acks). A
// client dialled with LinkWindow(n) then sends an empty LinkAck, after
// which the agent, after each read from the port, sends LinkAck with the
// bytes it has read since the end of that host's first Hello; the client
// keeps at most n bytes written after its first Hello and not yet read by
// the agent. Other hosts (a virtio-serial port, Bochs's serial line) get
// no LinkAcks. User-Mode Linux needs it: its serial
// driver stops polling the host's side of the line when the guest's line
// discipline throttles input (more than 3968 of its 4096 bytes unread)
// and never polls it again, so input past that stalls the port for good.
package agent
