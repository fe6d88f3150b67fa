package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/qmp/qmptest"
)

func TestDialNegotiatesCapabilities(t *testing.T) {
	s, m := connect(t)
	if got := s.Received(); !slices.Equal(got, []string{"qmp_capabilities"}) {
		t.Errorf("server received %q, want only qmp_capabilities", got)
	}
	s.Reply("query-status", map[string]any{"status": "prelaunch", "singlestep": false, "running": false})
	var st qmp.StatusInfo
	if err := m.Run(testCtx(t), qmp.QueryStatus{}, &st); err != nil {
		t.Fatal(err)
	}
	if st != (qmp.StatusInfo{Status: "prelaunch", Running: false}) {
		t.Errorf("got %+v", st)
	}
}

func TestRunDecodesResults(t *testing.T) {
	s, m := connect(t)
	ctx := testCtx(t)
	s.Reply("query-cpus-fast", []map[string]any{
		{"thread-id": 27489, "props": map[string]int{"core-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"},
		{"thread-id": 27490, "qom-path": "/machine/unattached/device[1]", "cpu-index": 1, "target": "x86_64"},
	})
	s.Reply("human-monitor-command", "VM status: paused (prelaunch)\r\n")
	s.Reply("query-block", []map[string]any{{
		"device": "drive0", "qdev": "", "removable": false, "locked": false, "type": "unknown",
		"inserted": map[string]any{
			"file": "/tmp/d.img", "node-name": "disk0", "drv": "raw", "ro": false,
			"image": map[string]any{"filename": "/tmp/d.img", "format": "raw", "virtual-size": 1048576, "actual-size": 4096},
		},
	}})

	var cpus []qmp.CPUInfo
	if err := m.Run(ctx, qmp.QueryCPUsFast{}, &cpus); err != nil {
		t.Fatal(err)
	}
	want := []qmp.CPUInfo{
		{CPUIndex: 0, ThreadID: 27489, Target: "x86_64", QOMPath: "/machine/unattached/device[0]"},
		{CPUIndex: 1, ThreadID: 27490, Target: "x86_64", QOMPath: "/machine/unattached/device[1]"},
	}
	if !slices.Equal(cpus, want) {
		t.Errorf("cpus: got %+v", cpus)
	}

	var out string
	if err := m.Run(ctx, qmp.HumanMonitorCommand{CommandLine: "info status"}, &out); err != nil {
		t.Fatal(err)
	}
	if out != "VM status: paused (prelaunch)\r\n" {
		t.Errorf("hmp: got %q", out)
	}

	var blocks []qmp.BlockInfo
	if err := m.Run(ctx, qmp.QueryBlock{}, &blocks); err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].Device != "drive0" || blocks[0].Inserted == nil ||
		blocks[0].Inserted.File != "/tmp/d.img" || blocks[0].Inserted.NodeName != "disk0" ||
		blocks[0].Inserted.Image.VirtualSize != 1<<20 {
		t.Errorf("blocks: got %+v", blocks)
	}

	// A nil result discards it.
	if err := m.Run(ctx, qmp.QueryBlock{}, nil); err != nil {
		t.Fatal(err)
	}
	// A result of the wrong type is a decode error, not a broken connection.
	var wrong int
	if err := m.Run(ctx, qmp.QueryBlock{}, &wrong); err == nil || !strings.HasPrefix(err.Error(), "qmp query-block: decode result: ") {
		t.Errorf("decoding into the wrong type: got %v", err)
	}
	if err := m.Run(ctx, qmp.QueryBlock{}, nil); err != nil {
		t.Errorf("after a decode error: %v", err)
	}
}

func TestRunSendsArguments(t *testing.T) {
	s, m := connect(t)
	got := make(chan json.RawMessage, 1)
	s.Handle("block_resize", func(r *qmptest.Request) {
		got <- r.Args
		r.Reply(struct{}{})
	})
	if err := m.Run(testCtx(t), qmp.BlockResize{NodeName: "disk0", Size: 2 << 30}, nil); err != nil {
		t.Fatal(err)
	}
	if args := <-got; string(args) != `{"node-name":"disk0","size":2147483648}` {
		t.Errorf("arguments: %s", args)
	}
}

// TestRepliesOutOfOrder has the peer answer a later command first: each Run
// must still get its own reply.
func TestRepliesOutOfOrder(t *testing.T) {
	s, m := connect(t)
	ctx := testCtx(t)
	held := make(chan *qmptest.Request, 1)
	s.Handle("query-status", func(r *qmptest.Request) { held <- r })
	s.Handle("query-kvm", func(r *qmptest.Request) {
		r.Reply(map[string]bool{"enabled": false, "present": true})
		(<-held).Reply(map[string]any{"status": "paused", "running": false})
	})

	statusDone := make(chan error, 1)
	var st qmp.StatusInfo
	go func() { statusDone <- m.Run(ctx, qmp.QueryStatus{}, &st) }()
	// Send query-kvm only once query-status is held, so the order on the
	// wire is certain.
	for !slices.Contains(s.Received(), "query-status") {
		time.Sleep(time.Millisecond)
	}
	var kvm qmp.KVMInfo
	if err := m.Run(ctx, qmp.QueryKVM{}, &kvm); err != nil {
		t.Fatal(err)
	}
	if err := <-statusDone; err != nil {
		t.Fatal(err)
	}
	if kvm != (qmp.KVMInfo{Enabled: false, Present: true}) || st.Status != "paused" {
		t.Errorf("kvm %+v, status %+v", kvm, st)
	}
}

// TestConcurrentRunsMatchRepliesByID has many goroutines Run at once and the
// peer answer them in reverse order of arrival.
func TestConcurrentRunsMatchRepliesByID(t *testing.T) {
	s, m := connect(t)
	ctx := testCtx(t)
	const n = 50
	var mu sync.Mutex
	var held []*qmptest.Request
	s.Handle("echo", func(r *qmptest.Request) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, r)
		if len(held) < n {
			return
		}
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Reply(held[i].Args)
		}
	})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var got struct{ N int }
			if err := m.Run(ctx, qmp.Raw{Name: "echo", Args: map[string]int{"n": i}}, &got); err != nil {
				t.Error(err)
				return
			}
			if got.N != i {
				t.Errorf("Run %d got the reply for %d", i, got.N)
			}
		})
	}
	wg.Wait()
}

func TestQMPErrorIsTypedError(t *testing.T) {
	s, m := connect(t)
	s.Fail("block_resize", "GenericError", "Cannot find device='nope' nor node-name=''")
	err := m.Run(testCtx(t), qmp.BlockResize{Device: "nope", Size: 1}, nil)
	var qerr *qmp.Error
	if !errors.As(err, &qerr) {
		t.Fatalf("got %v (%T), want a *qmp.Error", err, err)
	}
	if qerr.Class != qmp.ClassGenericError || qerr.Desc != "Cannot find device='nope' nor node-name=''" {
		t.Errorf("got %+v", qerr)
	}
	if want := "qmp block_resize: GenericError: Cannot find device='nope' nor node-name=''"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}

	// An unknown command, as QEMU reports it; the connection carries on.
	err = m.Run(testCtx(t), qmp.Raw{Name: "no-such-command"}, nil)
	if !errors.As(err, &qerr) || qerr.Class != qmp.ClassCommandNotFound {
		t.Errorf("unknown command: got %v", err)
	}
	s.Fail("x", "GenericError", "two\nlines")
	if err := m.Run(testCtx(t), qmp.Raw{Name: "x"}, nil); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("multi-line desc: got %q", err)
	}
}

// TestEventsDoNotDisturbReplies: QEMU's events, however many come between
// a request and its reply, are skipped without holding up the reply or
// ending the connection.
func TestEventsDoNotDisturbReplies(t *testing.T) {
	s, m := connect(t)
	s.Handle("query-status", func(r *qmptest.Request) {
		for i := range 1000 {
			if err := s.Event("BLOCK_JOB_PENDING", map[string]int{"n": i}); err != nil {
				t.Error(err)
			}
		}
		s.Event("SHUTDOWN", nil)
		r.Reply(map[string]any{"status": "paused", "running": false})
	})
	var st qmp.StatusInfo
	for range 3 {
		if err := m.Run(testCtx(t), qmp.QueryStatus{}, &st); err != nil {
			t.Fatal(err)
		}
		if st.Status != "paused" {
			t.Fatalf("status %+v, want the reply sent after the events", st)
		}
	}
	if err := m.Err(); err != nil {
		t.Errorf("connection ended by events: %v", err)
	}
}

func TestDoneClosesWhenPeerHangsUp(t *testing.T) {
	s, m := connect(t)
	ctx := testCtx(t)
	if m.Err() != nil {
		t.Fatalf("Err while connected: %v", m.Err())
	}
	s.Handle("stop", func(r *qmptest.Request) {}) // never answers
	pending := make(chan error, 1)
	go func() { pending <- m.Run(ctx, qmp.Stop{}, nil) }()
	for !slices.Contains(s.Received(), "stop") {
		time.Sleep(time.Millisecond)
	}
	s.HangUp()

	waitClosed(t, m.Done(), "Done")
	if err := <-pending; !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("pending Run: got %v, want ErrClosed", err)
	}
	if err := m.Err(); !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("Err: got %v, want ErrClosed", err)
	}
	if err := m.Run(ctx, qmp.QueryStatus{}, nil); !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("Run after hang-up: got %v, want ErrClosed", err)
	}
}

// TestQuitSucceedsWhenPeerHangsUpFirst: quitting is the point of Quit, so a
// QEMU that exits before its reply is out has done what was asked.
func TestQuitSucceedsWhenPeerHangsUpFirst(t *testing.T) {
	s, m := connect(t)
	s.Handle("quit", func(r *qmptest.Request) { s.HangUp() })
	if err := m.Run(testCtx(t), qmp.Quit{}, nil); err != nil {
		t.Errorf("Quit: %v", err)
	}
	waitClosed(t, m.Done(), "Done")
}

func TestCloseFailsPendingRuns(t *testing.T) {
	s, m := connect(t)
	ctx := testCtx(t)
	s.Handle("stop", func(r *qmptest.Request) {})
	pending := make(chan error, 1)
	go func() { pending <- m.Run(ctx, qmp.Stop{}, nil) }()
	for !slices.Contains(s.Received(), "stop") {
		time.Sleep(time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-pending; !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("pending Run: got %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Run(ctx, qmp.Quit{}, nil); !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("Quit after Close: got %v, want ErrClosed", err)
	}

	// QEMU serves the next client, so a driver can reconnect.
	m2, err := qmp.Dial(ctx, s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	s.Reply("query-status", map[string]any{"status": "running", "running": true})
	if err := m2.Run(ctx, qmp.QueryStatus{}, nil); err != nil {
		t.Error(err)
	}
}

func TestRunCancelKeepsConnection(t *testing.T) {
	s, m := connect(t)
	held := make(chan *qmptest.Request, 1)
	s.Handle("stop", func(r *qmptest.Request) { held <- r })
	s.Reply("query-status", map[string]any{"status": "paused", "running": false})

	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	if err := m.Run(ctx, qmp.Stop{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	var st qmp.StatusInfo
	if err := m.Run(testCtx(t), qmp.QueryStatus{}, &st); err != nil || st.Status != "paused" {
		t.Fatalf("after a cancelled Run: %+v, %v", st, err)
	}
	// The late reply to the cancelled Run goes nowhere and harms nothing.
	(<-held).Reply(struct{}{})
	if err := m.Run(testCtx(t), qmp.QueryStatus{}, &st); err != nil {
		t.Fatalf("after a late reply: %v", err)
	}

	// A ctx that has already ended sends nothing.
	done, cancelNow := context.WithCancel(testCtx(t))
	cancelNow()
	if err := m.Run(done, qmp.Cont{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("ended ctx: got %v", err)
	}
	if slices.Contains(s.Received(), "cont") {
		t.Error("a Run with an ended ctx sent its command")
	}
}

// TestRunCancelWhileQEMUStopsReading: a QEMU that no longer reads must not
// hold a Run past its ctx, even one that is stuck writing.
func TestRunCancelWhileQEMUStopsReading(t *testing.T) {
	s, m := connect(t)
	release := make(chan struct{})
	defer close(release)
	// A handler that blocks stops the fake peer reading, as a hung QEMU does.
	s.Handle("hang", func(r *qmptest.Request) { <-release })
	hung := make(chan error, 1)
	go func() { hung <- m.Run(testCtx(t), qmp.Raw{Name: "hang"}, nil) }()
	for !slices.Contains(s.Received(), "hang") {
		time.Sleep(time.Millisecond)
	}

	// The deadline leaves time to encode the request (slow under -race), so
	// that it ends while the write is blocked.
	ctx, cancel := context.WithTimeout(testCtx(t), time.Second)
	defer cancel()
	big := strings.Repeat("x", 2<<20) // far more than the socket buffers hold
	err := m.Run(ctx, qmp.Raw{Name: "echo", Args: map[string]string{"s": big}}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if deadline, _ := ctx.Deadline(); time.Since(deadline) > 5*time.Second {
		t.Errorf("Run returned %v after its deadline", time.Since(deadline))
	}
	// Half a request went out: the connection is given up, and says why.
	waitClosed(t, m.Done(), "Done")
	if err := <-hung; !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("the other Run: got %v, want ErrClosed", err)
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("Err: %v", err)
	}
}

func TestRepliesNobodyWaitsForAreDropped(t *testing.T) {
	s, m := connect(t)
	for _, line := range []string{
		`{"return": {}, "id": 999}`,
		`{"return": {}, "id": "not-ours"}`,
		`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`,
		`{"something-new": true}`,
		qmptest.Greeting,
	} {
		if err := s.SendRaw(line); err != nil {
			t.Fatal(err)
		}
	}
	s.Reply("query-status", map[string]any{"status": "running", "running": true})
	if err := m.Run(testCtx(t), qmp.QueryStatus{}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBadMessageEndsConnection(t *testing.T) {
	s, m := connect(t)
	s.SendRaw("this is not json")
	waitClosed(t, m.Done(), "Done")
	if err := m.Err(); !errors.Is(err, qmp.ErrClosed) || !strings.Contains(err.Error(), "bad message from peer") {
		t.Errorf("Err: %v", err)
	}
}

func TestDialRetriesUntilSocketAppears(t *testing.T) {
	checkNoLeaks(t)
	path := filepath.Join(t.TempDir(), "qmp.sock")
	dialed := make(chan error, 1)
	go func() {
		m, err := qmp.Dial(testCtx(t), path)
		if err == nil {
			m.Close()
		}
		dialed <- err
	}()
	time.Sleep(200 * time.Millisecond) // Dial meets a missing socket first
	qmptest.Start(t, path)
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
}

func TestDialRetriesWhileSocketRefuses(t *testing.T) {
	checkNoLeaks(t)
	path := filepath.Join(t.TempDir(), "qmp.sock")
	// A socket file nobody listens on, as a QEMU that died leaves behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	dialed := make(chan error, 1)
	go func() {
		m, err := qmp.Dial(testCtx(t), path)
		if err == nil {
			m.Close()
		}
		dialed <- err
	}()
	time.Sleep(200 * time.Millisecond)
	qmptest.Start(t, path)
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
}

func TestDialGivesUpWhenContextEnds(t *testing.T) {
	checkNoLeaks(t)
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := qmp.Dial(ctx, path)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("got %v, want DeadlineExceeded and the last reason", err)
	}
}

// TestDialWaitsForGreetingOnlyUntilContextEnds: a peer that accepts but
// never greets, as QEMU does while another client holds its monitor.
func TestDialWaitsForGreetingOnlyUntilContextEnds(t *testing.T) {
	checkNoLeaks(t)
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln := listenRaw(t, path, "", true)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	if _, err := qmp.Dial(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want DeadlineExceeded", err)
	}
}

func TestDialRefusesPeerThatIsNotQMP(t *testing.T) {
	checkNoLeaks(t)
	for _, greeting := range []string{"SSH-2.0-OpenSSH_9.2\r\n", `{"return": {}}` + "\n", ""} {
		path := filepath.Join(t.TempDir(), "qmp.sock")
		ln := listenRaw(t, path, greeting, false)
		_, err := qmp.Dial(testCtx(t), path)
		if err == nil || !strings.Contains(err.Error(), "read greeting") {
			t.Errorf("greeting %q: got %v", greeting, err)
		}
		ln.Close()
	}
}

// listenRaw accepts one connection on path and writes greeting to it. Then
// it hangs up, or with hold keeps the connection until the client hangs up.
func listenRaw(t *testing.T, path, greeting string, hold bool) net.Listener {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(greeting))
		if hold {
			conn.Read(make([]byte, 1))
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}
