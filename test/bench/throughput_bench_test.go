package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// transferSize is what each throughput sample moves: a sparse file served
// by busybox httpd, so that no disk is read.
const transferSize = 1 << 30

// throughputMemo carries BenchmarkNetworkThroughput's set-up across calls.
type throughputMemo struct {
	serverIP string
	peerDir  string    // the peer server's document root
	peer     *exec.Cmd // httpd in the peer namespace
	peerNS   [2]string // server and client namespaces of the peer pair
}

// BenchmarkNetworkThroughput compares TCP throughput through a polyvisor
// network with a veth pair joining two namespaces directly (no bridge, no
// polyvisor), in the same run: guest to guest (two busybox containers on
// polyvisor0) and host to guest (from the daemon's namespace, through the
// bridge). Each sample is one HTTP GET of a 1 GiB sparse file from busybox
// httpd by busybox wget, timed by busybox time -p inside the client.
func BenchmarkNetworkThroughput(b *testing.B) {
	if skipWhy != "" {
		b.Skip(skipWhy)
	}
	f := openNetworkFixture(b, "netthroughput")
	memo, _ := f.memo.(*throughputMemo)
	if memo == nil {
		memo = setUpThroughput(b, f)
		f.memo = memo
		f.onClose(memo.close)
	}
	url := fmt.Sprintf("http://%s:8080/big", memo.serverIP)
	var g2g, h2g, peer samples
	for range b.N {
		g2g = append(g2g, timedGet(b, []string{filepath.Join(f.daemon.BinDir, "polyvisor"), "--socket", f.daemon.Socket, "exec", "tp-client", "--"}, url))
		h2g = append(h2g, timedGet(b, []string{"nsenter", "--net=/run/netns/" + f.daemon.Netns, "--"}, url))
		peer = append(peer, timedGet(b, []string{"ip", "netns", "exec", memo.peerNS[1]}, "http://10.99.0.1:8080/big"))
	}
	mbps := func(s samples) float64 { return float64(transferSize) / (1 << 20) / (s.median() / 1000) }
	b.ReportMetric(mbps(g2g), "guest-guest-MiB/s")
	b.ReportMetric(mbps(h2g), "host-guest-MiB/s")
	b.ReportMetric(mbps(peer), "veth-veth-MiB/s")
	b.ReportMetric(mbps(g2g)/mbps(peer), "guest-ratio")
	b.ReportMetric(mbps(h2g)/mbps(peer), "host-ratio")
	b.Logf("n=%d MiB/s (medians): guest->guest %.0f, host->guest %.0f, veth->veth %.0f; ratios %.2f and %.2f; seconds per GiB p50/p90: %.2f/%.2f, %.2f/%.2f, %.2f/%.2f",
		b.N, mbps(g2g), mbps(h2g), mbps(peer), mbps(g2g)/mbps(peer), mbps(h2g)/mbps(peer),
		g2g.median()/1000, g2g.percentile(90)/1000, h2g.median()/1000, h2g.percentile(90)/1000, peer.median()/1000, peer.percentile(90)/1000)
}

// setUpThroughput launches the server and client guests, and the peer
// pair of namespaces with its own httpd.
func setUpThroughput(b *testing.B, f *fixture) *throughputMemo {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	memo := &throughputMemo{peerNS: [2]string{fmt.Sprintf("pv-tp-%d-s", os.Getpid()), fmt.Sprintf("pv-tp-%d-c", os.Getpid())}}
	for _, name := range []string{"tp-server", "tp-client"} {
		if err := f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Start: true, Memory: "512MiB"}); err != nil {
			b.Fatal(err)
		}
	}
	for memo.serverIP == "" {
		g, err := f.client.Guest(ctx, "tp-server")
		if err != nil || ctx.Err() != nil {
			b.Fatalf("tp-server got no address: %v %v", err, ctx.Err())
		}
		if len(g.IPv4) > 0 {
			memo.serverIP = g.IPv4[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	serve := fmt.Sprintf("mkdir -p /srv && truncate -s %d /srv/big && busybox httpd -p 8080 -h /srv", transferSize)
	if out, errOut, code := f.daemon.Run("exec", "tp-server", "--", "sh", "-c", serve); code != 0 {
		b.Fatalf("start httpd in tp-server: %s%s", out, errOut)
	}
	// The peer: two namespaces and a veth pair, nothing else.
	s, c := memo.peerNS[0], memo.peerNS[1]
	for _, args := range [][]string{
		{"netns", "add", s}, {"netns", "add", c},
		{"link", "add", "pvtp-s", "netns", s, "type", "veth", "peer", "name", "pvtp-c", "netns", c},
		{"-n", s, "addr", "add", "10.99.0.1/30", "dev", "pvtp-s"}, {"-n", c, "addr", "add", "10.99.0.2/30", "dev", "pvtp-c"},
		{"-n", s, "link", "set", "pvtp-s", "up"}, {"-n", c, "link", "set", "pvtp-c", "up"},
		{"-n", s, "link", "set", "lo", "up"}, {"-n", c, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			memo.close()
			b.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	memo.peerDir = filepath.Join(f.dir, "peer-srv")
	if err := os.MkdirAll(memo.peerDir, 0o755); err != nil {
		b.Fatal(err)
	}
	big, err := os.Create(filepath.Join(memo.peerDir, "big"))
	if err == nil {
		err = big.Truncate(transferSize)
		big.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	memo.peer = exec.Command("ip", "netns", "exec", s, "busybox", "httpd", "-f", "-p", "8080", "-h", memo.peerDir)
	if err := memo.peer.Start(); err != nil {
		memo.close()
		b.Fatal(err)
	}
	// httpd is up once the first GET answers.
	for i := 0; ; i++ {
		if exec.Command("ip", "netns", "exec", c, "busybox", "wget", "-q", "-O", "/dev/null", "--spider", "http://10.99.0.1:8080/big").Run() == nil {
			break
		}
		if i > 100 {
			memo.close()
			b.Fatal("the peer's httpd did not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return memo
}

// close ends the peer's httpd (ours, by its pid) and removes its namespaces.
func (m *throughputMemo) close() {
	if m.peer != nil && m.peer.Process != nil {
		m.peer.Process.Kill()
		m.peer.Wait()
	}
	for _, ns := range m.peerNS {
		exec.Command("ip", "netns", "delete", ns).Run()
	}
}

// realSeconds reads busybox time -p's "real S.SS" line.
var realSeconds = regexp.MustCompile(`(?m)^real ([0-9.]+)$`)

// timedGet runs busybox wget of url under busybox time -p through prefix
// (the command that places it) and returns how long the transfer took.
func timedGet(b *testing.B, prefix []string, url string) time.Duration {
	args := append(append([]string{}, prefix...), "busybox", "time", "-p", "busybox", "wget", "-q", "-O", "/dev/null", url)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	m := realSeconds.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		b.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	s, _ := strconv.ParseFloat(m[1], 64)
	return time.Duration(s * float64(time.Second))
}
