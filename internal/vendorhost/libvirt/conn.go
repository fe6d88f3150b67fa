package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// Bounds of the calls to libvirt: go-libvirt's calls take no context, so
// every one runs under one of these, and a call that overruns closes the
// connection (the next call opens a new one).
const (
	dialTimeout = 15 * time.Second
	// callTimeout bounds a plain call (a lookup, an XML, a list).
	callTimeout = 30 * time.Second
	// slowCallTimeout bounds the calls that start or stop processes or
	// write disks: a domain's start (QEMU probes under TCG), a snapshot.
	slowCallTimeout = 3 * time.Minute
)

// session is one connection to a libvirt daemon.
type session struct {
	lv   *golibvirt.Libvirt
	conn net.Conn
}

// close ends the session: libvirt's close call, bounded, then the
// socket, which ends any call still waiting.
func (s *session) close() error {
	done := make(chan error, 1)
	go func() { done <- s.lv.Disconnect() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		s.conn.Close()
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			// go-libvirt is wedged (a reader blocked on a caller that
			// left); its goroutine is abandoned rather than the caller.
			return errors.New("libvirt's close call did not return after the socket closed")
		}
	}
	// go-libvirt closes nothing when the daemon hung up first (it does
	// after the close call); the transport (an SSH client) must still go.
	s.conn.Close()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// dial opens a session: the transport's connection, then libvirt's
// ConnectOpen of t.open.
func dial(ctx context.Context, t target, c vendorhost.Credentials) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	switch t.transport {
	case "unix":
		conn, err = (&net.Dialer{}).DialContext(ctx, "unix", t.socket)
	case "tcp":
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", t.display)
	case "tls":
		conn, err = dialTLS(ctx, t, c.Fingerprint)
	case "ssh":
		conn, err = dialSSH(ctx, t, c.Password)
	default:
		err = fmt.Errorf("transport %s", t.transport)
	}
	if err != nil {
		if errors.Is(err, vendorhost.ErrAuth) || errors.Is(err, vendorhost.ErrInvalid) {
			return nil, fmt.Errorf("libvirt at %s: %w", t.display, err)
		}
		// The address is said once, here, not again in net's words.
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return nil, fmt.Errorf("%w: libvirt at %s: %w; check that libvirtd runs there and the URI names its socket", vendorhost.ErrUnreachable, t.display, err)
	}
	s := &session{lv: golibvirt.NewWithDialer(dialers.NewAlreadyConnected(conn)), conn: conn}
	err = bounded(ctx, conn, func() error { return s.lv.ConnectToURI(golibvirt.ConnectURI(t.open)) })
	if err != nil {
		conn.Close()
		if le, ok := libvirtError(err); ok && le.Code == uint32(golibvirt.ErrAuthFailed) {
			return nil, fmt.Errorf("%w: libvirt at %s: %s; polyvisor authenticates by the socket's permissions, TLS client certificates or SSH keys, not SASL", vendorhost.ErrAuth, t.display, le.Message)
		}
		if _, ok := libvirtError(err); ok {
			return nil, fmt.Errorf("%w: libvirt at %s: open %s: %w", vendorhost.ErrNotSupported, t.display, t.open, err)
		}
		return nil, fmt.Errorf("%w: libvirt at %s: open %s: %w", vendorhost.ErrUnreachable, t.display, t.open, err)
	}
	return s, nil
}

// bounded runs f, a go-libvirt call on conn, until ctx ends; then it
// closes conn, which makes f return, and waits for it (10 s at most). The
// goroutine is f's alone.
func bounded(ctx context.Context, conn net.Conn, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		conn.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			// Never seen; a wedged go-libvirt must not hang the caller.
		}
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
}

// libvirtError is err's libvirt error, if it has one.
func libvirtError(err error) (golibvirt.Error, bool) {
	var le golibvirt.Error
	if errors.As(err, &le) {
		return le, true
	}
	return le, false
}

// conns holds a Host's session, opened again when the last one broke.
type conns struct {
	t     target
	creds vendorhost.Credentials
	mu    sync.Mutex
	s     *session
}

// get returns the live session, dialing a new one when there is none.
func (c *conns) get(ctx context.Context) (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s != nil && c.s.lv.IsConnected() {
		return c.s, nil
	}
	if c.s != nil {
		c.s.conn.Close()
		c.s = nil
	}
	s, err := dial(ctx, c.t, c.creds)
	if err != nil {
		return nil, err
	}
	c.s = s
	return s, nil
}

// call runs f on the host's session, bounded by timeout (and ctx), and
// maps its error to the vendorhost sentinels, prefixed by what.
func (c *conns) call(ctx context.Context, what string, timeout time.Duration, f func(l *golibvirt.Libvirt) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := c.get(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = bounded(ctx, s.conn, func() error { return f(s.lv) })
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, c.mapError(err))
}

// mapError gives a libvirt error its vendorhost sentinel; an error that is
// not libvirt's is the connection's.
func (c *conns) mapError(err error) error {
	for _, known := range []error{vendorhost.ErrNotFound, vendorhost.ErrNotSupported, vendorhost.ErrInvalid, vendorhost.ErrUnreachable, vendorhost.ErrAuth, vendorhost.ErrConflict} {
		if errors.Is(err, known) {
			return err // this package's own refusal
		}
	}
	le, ok := libvirtError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%w: libvirt at %s: %w", vendorhost.ErrUnreachable, c.t.display, err)
		}
		return fmt.Errorf("%w: libvirt at %s: connection lost: %w", vendorhost.ErrUnreachable, c.t.display, err)
	}
	var sentinel error
	switch golibvirt.ErrorNumber(le.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoDomainSnapshot, golibvirt.ErrNoStorageVol, golibvirt.ErrNoStoragePool:
		sentinel = vendorhost.ErrNotFound
	case golibvirt.ErrOperationInvalid:
		sentinel = vendorhost.ErrConflict
	case golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported, golibvirt.ErrArgumentUnsupported:
		sentinel = vendorhost.ErrNotSupported
	case golibvirt.ErrAuthFailed:
		sentinel = vendorhost.ErrAuth
	case golibvirt.ErrInvalidArg, golibvirt.ErrXMLError:
		sentinel = vendorhost.ErrInvalid
	default:
		return fmt.Errorf("libvirt: %w", err)
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// close ends the session, if any.
func (c *conns) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil {
		return nil
	}
	err := c.s.close()
	c.s = nil
	return err
}
