package agent

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/stream"
	"golang.org/x/sys/unix"
)

// outputGrace is how long a session waits, once its command has exited,
// for the rest of the output: a background process that inherited the
// command's stdout could otherwise hold the session open for ever.
const outputGrace = time.Second

// errSessionEnded is returned for output of a session that has ended.
var errSessionEnded = errors.New("session ended")

// session is one command run for the host.
type session struct {
	link *link
	host nonce // the host connection the session belongs to
	id   uint32
	req  ExecRequest

	input  *queue[[]byte] // Stdin payloads; closed by CloseStdin
	credit *credit        // output bytes the host will still accept
	done   chan struct{}  // closed when the session ends or is killed
	once   sync.Once      // closes done

	// sendMu makes "ended" and the frames sent exact: once the Exit is
	// out, no output can follow it.
	sendMu sync.Mutex
	ended  bool

	mu     sync.Mutex // guards the fields below
	pid    int        // the command's process (group), once started
	reaped bool       // pid has been waited for and may be reused
	killed bool
	master *os.File // the pty master of a tty session
}

func newSession(l *link, h nonce, id uint32, req ExecRequest) *session {
	return &session{
		link: l, host: h, id: id, req: req,
		input:  newQueue[[]byte](),
		credit: newCredit(window),
		done:   make(chan struct{}),
	}
}

// start starts the command and the goroutines that serve it. A command
// that cannot start is reported as a shell would, a message on stderr and
// exit code 127 or 126, so that `polyvisor exec` ends the same way in
// every kind of guest.
func (s *session) start() {
	cmd, code, err := command(s.req)
	var stdin io.WriteCloser
	var slave *os.File
	if err == nil {
		stdin, slave, err = s.wire(cmd)
		code = 126
	}
	if err == nil {
		err = cmd.Start()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
	}
	if slave != nil {
		slave.Close() // the command has its own copy
	}
	if err != nil {
		if s.master != nil {
			s.master.Close()
		}
		s.refuse(code, err)
		return
	}
	s.mu.Lock()
	s.pid = cmd.Process.Pid
	s.mu.Unlock()
	s.link.running.Add(1)
	go s.run(cmd, stdin)
}

// wire connects the command to the session: pipes, or a new pty whose
// master the session keeps.
func (s *session) wire(cmd *exec.Cmd) (stdin io.WriteCloser, slave *os.File, err error) {
	if !s.req.TTY {
		cmd.Stdout = s.writer(typeStdout)
		cmd.Stderr = s.writer(typeStderr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // its own process group, to kill
		cmd.WaitDelay = outputGrace
		stdin, err = cmd.StdinPipe()
		return stdin, nil, err
	}
	master, slave, err := openPTY()
	if err != nil {
		return nil, nil, err
	}
	if s.req.Rows > 0 && s.req.Cols > 0 {
		setWinsize(master, s.req.Rows, s.req.Cols)
	}
	s.master = master
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	return master, slave, nil
}

// refuse reports a command that did not start and ends the session.
func (s *session) refuse(code int, err error) {
	s.link.log.Info("command did not start", "session", s.id, "command", s.req.Command, "err", err)
	s.send(typeStderr, []byte("polyvisor-agent: "+err.Error()+"\n"))
	s.finish(code)
}

// run serves a started command until it has exited and its output is out.
func (s *session) run(cmd *exec.Cmd, stdin io.WriteCloser) {
	defer s.link.running.Done()
	var inputDone sync.WaitGroup
	inputDone.Add(1)
	go func() {
		defer inputDone.Done()
		s.feedInput(stdin)
	}()
	var outputDone chan struct{}
	if s.master != nil {
		outputDone = make(chan struct{})
		go func() {
			defer close(outputDone)
			io.Copy(s.writer(typeStdout), s.master) // ends with EIO once the pty's slave is closed
		}()
	}

	s.awaitExit()
	err := cmd.Wait() // with pipes, this also waits up to outputGrace for the output
	if outputDone != nil {
		select {
		case <-outputDone:
		case <-time.After(outputGrace):
		}
	}
	s.end()
	if s.master != nil {
		s.master.Close() // interrupts the copies from and to it
		<-outputDone
	}
	inputDone.Wait()
	if cmd.ProcessState == nil {
		s.link.log.Error("wait for command", "session", s.id, "err", err)
	}
	s.finish(exitCode(cmd.ProcessState))
}

// awaitExit waits until the command has exited without reaping it, then
// notes that it is about to be reaped: until then its pid, the id of its
// process group, cannot be reused, so kill may signal the group safely.
func (s *session) awaitExit() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, s.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	s.mu.Lock()
	s.reaped = true
	s.mu.Unlock()
}

// feedInput writes the host's Stdin payloads to the command and grants
// the host more credit for each, until the session ends.
func (s *session) feedInput(dst io.WriteCloser) {
	for {
		chunks, closed := s.input.take()
		for _, p := range chunks {
			if _, err := dst.Write(p); err != nil {
				break // the command stopped reading; drop the rest
			}
			s.send(typeAck, encodeAck(uint32(len(p))))
		}
		if closed { // and all of it taken
			s.endInput(dst)
			<-s.done
			return
		}
		select {
		case <-s.input.wait():
		case <-s.done:
			return
		}
	}
}

// endInput passes CloseStdin on: it closes a pipe; on a terminal it types
// the EOF character when the terminal is in line mode, where that ends a
// reader's input, and does nothing when a program has it in raw mode.
func (s *session) endInput(dst io.WriteCloser) {
	if s.master == nil {
		dst.Close()
		return
	}
	if isCanonical(s.master) {
		s.master.Write([]byte{4}) // ^D, VEOF's default
	}
}

// resize applies a Resize frame to a tty session's terminal.
func (s *session) resize(rows, cols uint16) {
	if s.master != nil && rows > 0 && cols > 0 {
		setWinsize(s.master, rows, cols)
	}
}

// send writes a frame of this session, unless the session has ended.
func (s *session) send(typ byte, payload []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.ended {
		return errSessionEnded
	}
	return s.link.send(s.host, typ, s.id, payload)
}

// finish sends the exit code, unless the host killed the session, and
// removes the session: nothing of it is sent after this.
func (s *session) finish(code int) {
	s.sendMu.Lock()
	s.mu.Lock()
	killed := s.killed
	s.mu.Unlock()
	if !s.ended && !killed {
		s.link.send(s.host, typeExit, s.id, stream.EncodeExit(int32(code)))
	}
	s.ended = true
	s.sendMu.Unlock()
	s.end()
	s.link.forget(s)
}

// end closes done, which stops the session's waits for input and credit.
func (s *session) end() {
	s.once.Do(func() { close(s.done) })
}

// kill ends the session at once: its process group gets SIGKILL and no
// Exit is sent. The host asked for it, or is gone.
func (s *session) kill() {
	s.mu.Lock()
	s.killed = true
	if s.pid > 0 && !s.reaped {
		unix.Kill(-s.pid, unix.SIGKILL)
	}
	s.mu.Unlock()
	s.end()
}

// writer returns an io.Writer that sends what is written as frames of type
// typ, each within the credit the host has granted.
func (s *session) writer(typ byte) io.Writer {
	return &sessionWriter{s: s, typ: typ}
}

// sessionWriter is the io.Writer writer returns.
type sessionWriter struct {
	s   *session
	typ byte
}

func (w *sessionWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, ok := w.s.credit.take(w.s.done, min(len(p)-written, MaxPayload))
		if !ok {
			return written, errSessionEnded
		}
		if err := w.s.send(w.typ, p[written:written+n]); err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// exitCode returns a finished command's exit code, 128+signal when a
// signal killed it, as a shell reports it.
func exitCode(state *os.ProcessState) int {
	if state == nil {
		return 255
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}
