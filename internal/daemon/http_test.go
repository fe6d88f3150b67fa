package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// testReadTimeout stands in for readTimeout, so that tests wait briefly.
const testReadTimeout = 300 * time.Millisecond

// serve runs h the way Run does, on a loopback port, until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(context.Background(), h, testReadTimeout)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// rawRequest sends text as is and reads the answer, giving up after limit.
func rawRequest(t *testing.T, addr, text string, limit time.Duration) (*http.Response, string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(limit))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, "", err
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), nil
}

// TestStalledBodyGetsAnErrorAndTheDaemonStaysUp: a client that sends the
// headers and then part of its body is answered once the read deadline
// passes, and the daemon serves the next client.
func TestStalledBodyGetsAnErrorAndTheDaemonStaysUp(t *testing.T) {
	d := testDaemon(t)
	addr := serve(t, d.routes())
	start := time.Now()
	resp, body, err := rawRequest(t, addr, "POST "+api.Version+"/guests HTTP/1.1\r\nHost: polyvisor\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":", 5*time.Second)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "request body: it stopped arriving") {
		t.Errorf("stalled body: %s %s", resp.Status, body)
	}
	if took := time.Since(start); took < testReadTimeout {
		t.Errorf("answered after %v, before the read deadline", took)
	}
	resp, body, err = rawRequest(t, addr, "GET "+api.Version+" HTTP/1.1\r\nHost: polyvisor\r\n\r\n", 5*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the next request: %v %v %s", resp, err, body)
	}
}

// TestLongRequestsOutliveTheReadDeadline: the operation wait's long poll
// and an upgraded stream last longer than a request may take to arrive.
func TestLongRequestsOutliveTheReadDeadline(t *testing.T) {
	d := testDaemon(t)
	release := make(chan struct{})
	defer close(release)
	op := d.ops.start(d.ctx, "build", "busybox", func(context.Context, func(api.Progress)) error {
		<-release
		return nil
	})
	addr := serve(t, d.routes())
	poll := 3 * testReadTimeout
	start := time.Now()
	resp, body, err := rawRequest(t, addr, "GET "+api.Version+"/operations/"+op.ID+"/wait?timeout="+strconv.FormatFloat(poll.Seconds(), 'f', -1, 64)+" HTTP/1.1\r\nHost: polyvisor\r\n\r\n", 5*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("wait: %v %v %s", resp, err, body)
	}
	if took := time.Since(start); took < poll {
		t.Errorf("the long poll ended after %v, not the %v asked", took, poll)
	}

	// A stream (exec's shape): a JSON body, then frames both ways for
	// longer than the read deadline.
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.ExecRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		conn, in, err := upgrade(w)
		if err != nil {
			return
		}
		defer conn.Close()
		f, err := stream.ReadFrame(in)
		if err != nil {
			stream.WriteFrame(conn, stream.Error, []byte(err.Error()))
			return
		}
		stream.WriteFrame(conn, stream.Stdout, f.Data)
	})
	addr = serve(t, echo)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	payload, _ := json.Marshal(api.ExecRequest{Command: []string{"true"}})
	io.WriteString(conn, "POST /exec HTTP/1.1\r\nHost: polyvisor\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeProtocol+"\r\nContent-Length: "+strconv.Itoa(len(payload))+"\r\n\r\n"+string(payload))
	r := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	time.Sleep(2 * testReadTimeout)
	stream.WriteFrame(conn, stream.Stdin, []byte("still here"))
	f, err := stream.ReadFrame(r)
	if err != nil || f.Type != stream.Stdout || string(f.Data) != "still here" {
		t.Errorf("the stream after the read deadline: %+v %v (%s)", f, err, f.Data)
	}
}
