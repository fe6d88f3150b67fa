package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// connTimeout bounds one net.tcp connection, so that a peer that stops
// reading cannot hang the probe.
const connTimeout = 2 * time.Minute

// Serve is the sink net.tcp sends to: for every connection ln accepts it
// reads to EOF, answers the number of bytes it read as a decimal line,
// and closes. It returns nil when ctx is done, or ln's error.
func Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			n, err := drain(conn)
			if err != nil {
				log.Warn("net.tcp sink", "peer", conn.RemoteAddr(), "err", err)
				return
			}
			fmt.Fprintf(conn, "%d\n", n)
			log.Info("net.tcp sink", "peer", conn.RemoteAddr(), "bytes", n)
		}()
	}
}

// drain reads conn to EOF and returns how many bytes it read.
func drain(conn net.Conn) (int64, error) {
	buf := make([]byte, 256<<10)
	var total int64
	for {
		conn.SetReadDeadline(time.Now().Add(connTimeout))
		n, err := conn.Read(buf)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// netTCP measures MiB/s sent to the peer's Serve, each run on a new
// connection, until the peer has counted every byte.
func netTCP(ctx context.Context, r *runner) ([]float64, string, error) {
	if r.peer == "" {
		return nil, "", errors.New("no peer given: run polyvisor-probe --serve ADDR elsewhere and pass --peer HOST:PORT")
	}
	buf := make([]byte, 1<<20)
	fillRandom(buf)
	kernel := func(n int) error { return send(ctx, r.peer, buf, n) }
	runs, err := r.timed(ctx, kernel, perSecond(1))
	return runs, "", err
}

// send sends n copies of buf to the sink at addr and checks its count.
func send(ctx context.Context, addr string, buf []byte, n int) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(connTimeout))
	for range n {
		if _, err := conn.Write(buf); err != nil {
			return err
		}
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the peer's count: %w", err)
	}
	got, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("peer %s is no polyvisor-probe sink: it answered %q", addr, line)
	}
	if sent := int64(n) * int64(len(buf)); got != sent {
		return fmt.Errorf("peer counted %d bytes of %d", got, sent)
	}
	return nil
}
