package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/polyvisor/polyvisor/internal/stream"
	"golang.org/x/sys/unix"
)

// errStaleHost is returned for a frame of a host connection that has been
// replaced or has gone: it is dropped rather than shown to the new host.
var errStaleHost = errors.New("host connection replaced")

// link is the agent's side of one open port: the current host connection,
// its sessions, and the lock that keeps frames whole on the port.
type link struct {
	port *os.File
	log  *slog.Logger

	// writeMu is held for each whole frame written to the port: frames
	// of several sessions must never interleave.
	writeMu sync.Mutex

	// linkAcks: the port is a terminal, whose reads are reported with
	// LinkAck frames (see the package doc's link pacing).
	linkAcks bool
	// pos is the port's byte offset at the end of the frame being
	// handled; only the reader touches it.
	pos uint64

	mu        sync.Mutex // guards the fields below; taken after writeMu
	host      nonce      // the current host connection, when hasHost
	hasHost   bool
	sessions  map[uint32]*session
	linkBase  uint64 // pos at the end of the current host's first Hello
	linkSent  uint64 // the last LinkAck's total sent to the current host
	linkAsked bool   // the current host has asked for LinkAcks

	running sync.WaitGroup // sessions whose goroutines have not ended
}

func newLink(port *os.File, log *slog.Logger) *link {
	return &link{port: port, log: log, sessions: map[uint32]*session{}}
}

// send writes one frame on behalf of host connection h, or drops it with
// errStaleHost when h is no longer the current one, so a new host never
// sees what an old session still had to say.
func (l *link) send(h nonce, typ byte, session uint32, payload []byte) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	current := l.hasHost && l.host == h
	l.mu.Unlock()
	if !current {
		return errStaleHost
	}
	if _, err := l.port.Write(encodeFrame(typ, session, payload)); err != nil {
		return fmt.Errorf("write frame to agent port: %w", err)
	}
	return nil
}

// handle acts on one frame from the host. A frame that makes no sense is
// ignored: a host that sends nonsense gets nothing, and one that sends a
// Hello starts afresh.
func (l *link) handle(f frame) {
	if f.typ == typeHello {
		l.hello(f.payload)
		return
	}
	l.mu.Lock()
	h, hasHost, s := l.host, l.hasHost, l.sessions[f.session]
	l.mu.Unlock()
	if !hasHost {
		return
	}
	switch f.typ {
	case typePing:
		if len(f.payload) <= maxPingPayload {
			l.send(h, typePong, f.session, f.payload)
		}
	case typeExecStart:
		l.startSession(h, f)
	case typeLinkAck:
		l.mu.Lock()
		if l.hasHost && l.host == h {
			l.linkAsked = true
		}
		l.mu.Unlock()
	}
	if s == nil {
		return
	}
	switch f.typ {
	case typeStdin:
		s.input.push(f.payload)
	case typeCloseStdin:
		s.input.close()
	case typeResize:
		if rows, cols, err := stream.DecodeResize(f.payload); err == nil {
			s.resize(rows, cols)
		}
	case typeAck:
		if n, err := decodeAck(f.payload); err == nil && n <= window {
			s.credit.give(int(n))
		}
	case typeError:
		l.log.Info("host ended a session", "session", s.id, "message", string(f.payload))
		l.forget(s)
		s.kill()
	}
}

// hello starts a new host connection, unless it is the current one saying
// Hello again (the host repeats it until it hears back, and a booting
// guest may find several queued up): the sessions of the previous
// connection are killed, since nobody can reach them any more.
func (l *link) hello(p []byte) {
	n, err := decodeHello(p)
	if err != nil {
		return
	}
	ack, err := encodeHelloAck(n, l.info())
	if err != nil {
		l.log.Error("answer hello", "err", err)
		return
	}
	l.writeMu.Lock()
	l.mu.Lock()
	var old map[uint32]*session
	fresh := !l.hasHost || l.host != n
	if fresh {
		old, l.sessions = l.sessions, map[uint32]*session{}
		l.host, l.hasHost = n, true
		l.linkBase, l.linkSent, l.linkAsked = l.pos, 0, false
	}
	l.mu.Unlock()
	_, err = l.port.Write(encodeFrame(typeHelloAck, 0, ack))
	l.writeMu.Unlock()
	if err != nil {
		l.log.Error("answer hello", "err", err)
	}
	if fresh {
		l.log.Info("host connected", "previous sessions killed", len(old))
	}
	for _, s := range old {
		s.kill()
	}
}

// announce tells a host that may be connected that the agent has just
// opened its port and has no sessions: a HelloAck with the zero nonce,
// which answers no Dial, makes that host's client fail its calls instead
// of waiting for ever on sessions that a previous agent had.
func (l *link) announce() {
	ack, err := encodeHelloAck(nonce{}, l.info())
	if err == nil {
		l.writeMu.Lock()
		_, err = l.port.Write(encodeFrame(typeHelloAck, 0, ack))
		l.writeMu.Unlock()
	}
	if err != nil {
		l.log.Warn("announce the agent on its port", "err", err)
	}
}

// info is what HelloAck says about this guest and this port.
func (l *link) info() GuestInfo {
	info := localInfo()
	info.LinkAcks = l.linkAcks
	return info
}

// ackRead tells the current host, if it has asked for LinkAcks, that the
// agent has read the port up to offset total. The reader calls it after
// each read, once it has handled the frames the read completed, so that a
// Hello in them counts from its end.
func (l *link) ackRead(total uint64) {
	l.mu.Lock()
	h, hasHost := l.host, l.hasHost
	read := total - l.linkBase
	if !hasHost || !l.linkAsked || total < l.linkBase || read == l.linkSent {
		l.mu.Unlock()
		return
	}
	l.linkSent = read
	l.mu.Unlock()
	l.send(h, typeLinkAck, 0, encodeLinkAck(read))
}

// hostGone forgets the current host connection and kills its sessions.
func (l *link) hostGone() {
	l.mu.Lock()
	old, hadHost := l.sessions, l.hasHost
	l.sessions, l.hasHost = map[uint32]*session{}, false
	l.mu.Unlock()
	if hadHost {
		l.log.Info("host disconnected", "sessions killed", len(old))
	}
	for _, s := range old {
		s.kill()
	}
}

// dropAll kills every session and waits until their goroutines are gone.
func (l *link) dropAll() {
	l.hostGone()
	l.running.Wait()
}

// forget removes s from the current sessions, if it is still there.
func (l *link) forget(s *session) {
	l.mu.Lock()
	if l.sessions[s.id] == s {
		delete(l.sessions, s.id)
	}
	l.mu.Unlock()
}

// startSession runs the command of an ExecStart frame.
func (l *link) startSession(h nonce, f frame) {
	if f.session == 0 {
		return // session 0 is the connection's own
	}
	l.mu.Lock()
	_, exists := l.sessions[f.session]
	l.mu.Unlock()
	if exists {
		l.send(h, typeError, f.session, []byte(fmt.Sprintf("session %d is already running", f.session)))
		return
	}
	req, err := decodeExecRequest(f.payload)
	if err != nil {
		l.send(h, typeError, f.session, []byte(err.Error()))
		return
	}
	s := newSession(l, h, f.session, req)
	// Registered before it starts, so that its end, which may come at
	// once, finds it to remove.
	l.mu.Lock()
	l.sessions[s.id] = s
	l.mu.Unlock()
	s.start()
}

// localInfo describes this guest for HelloAck. It is read at each Hello:
// init may set the host name after the agent has started.
func localInfo() GuestInfo {
	info := GuestInfo{Version: Version}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	info.Hostname, _ = os.Hostname()
	return info
}
