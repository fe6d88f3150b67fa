package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Three members form a cluster from tokens and act as one: guests placed
// on all three, listed and exec'd into from any; an HA guest runs again
// elsewhere when its member dies, and the member comes back without a
// second copy; a member cut off from the others refuses writes.
func TestClusterOfThree(t *testing.T) {
	requireRoot(t)
	lab := testenv.NewClusterLab(t, env.bin)
	a, b, c := lab.Member("a"), lab.Member("b"), lab.Member("c")
	// Built on a alone: the others fetch it when a guest lands on them.
	a.Must(t, "template", "build", "busybox")

	// Forming: init, tokens, joins; a token works once, a bad one never.
	expectError(t, a.Daemon, "in no cluster", "cluster", "list")
	a.Must(t, "cluster", "init", "--member", "a", "--offline-after", "5s", "--replicate-every", "2s")
	tokenB := strings.TrimSpace(a.Must(t, "cluster", "add", "b"))
	b.Must(t, "cluster", "join", tokenB)
	expectError(t, c.Daemon, "the join token is not valid", "cluster", "join", tokenB)
	expectError(t, c.Daemon, "token: not one that 'polyvisor cluster add' printed", "cluster", "join", "pvjoin-"+strings.Repeat("x", 40))
	expectError(t, c.Daemon, "token: not one that 'polyvisor cluster add' printed", "cluster", "join", tokenB[:len(tokenB)-9])
	c.Must(t, "cluster", "join", strings.TrimSpace(b.Must(t, "cluster", "add", "c")))
	testenv.Eventually(t, 20*time.Second, "three members online", func() error {
		view := c.Cluster(t)
		if len(view.Members) != 3 {
			return fmt.Errorf("members: %+v", view.Members)
		}
		for _, m := range view.Members {
			if m.Health != api.MemberOnline || m.Role != "voter" || m.CPUs == 0 || m.FreeMemory == 0 || m.Classes["container"] != "ok" {
				return fmt.Errorf("member %+v", m)
			}
		}
		return nil
	})
	if out := a.Must(t, "cluster", "list"); !strings.Contains(out, "ONLINE") || !strings.Contains(out, "voter") {
		t.Fatalf("cluster list: %s", out)
	}

	// Placement: a spread group lands on every member; one view from any.
	for _, name := range []string{"web1", "web2", "web3"} {
		a.Must(t, "launch", "busybox", name, "--spread", "web")
	}
	on := map[string]string{}
	for name, g := range b.Listed(t) {
		on[name] = g.Member
		if g.State != api.StateRunning {
			t.Errorf("guest %s: %s", name, g.State)
		}
	}
	if len(on) != 3 || on["web1"] == on["web2"] || on["web2"] == on["web3"] || on["web1"] == on["web3"] {
		t.Fatalf("a spread group's guests are not on three members: %v", on)
	}
	for name, member := range on {
		if out := c.Must(t, "exec", name, "--", "hostname"); strings.TrimSpace(out) != name {
			t.Errorf("exec %s (on %s) from c: %q", name, member, out)
		}
	}
	if out := a.Must(t, "list"); !strings.Contains(out, "HOST") {
		t.Errorf("a cluster's list has no HOST column: %s", out)
	}
	elsewhere := map[string]string{"a": "b", "b": "c", "c": "a"}
	expectError(t, b.Daemon, "the name is taken on cluster member "+on["web1"], "launch", "busybox", "web1", "--target", elsewhere[on["web1"]])
	expectError(t, b.Daemon, "target \"nowhere\": no such cluster member", "launch", "busybox", "x", "--target", "nowhere")
	a.Must(t, "stop", "web3")
	if g := c.Listed(t)["web3"]; g.State != api.StateStopped {
		t.Errorf("web3 after stop through a: %+v", g)
	}
	a.Must(t, "delete", "web3")
	if _, still := c.Listed(t)["web3"]; still {
		t.Errorf("web3 is listed after its delete")
	}
	for _, m := range []*testenv.Member{b, c} {
		if _, err := os.Stat(filepath.Join(m.StateDir, "templates", "busybox", "template.yaml")); err != nil {
			t.Errorf("member %s did not fetch the template a built: %v", m.Name, err)
		}
	}

	// A cold move: stopped, copied, started on the target.
	from := on["web1"]
	to := elsewhere[from]
	_, moveErr, code := a.Run("move", "web1", "--target", to)
	if code != 0 || !strings.Contains(moveErr, "moved cold") {
		t.Fatalf("move web1 from %s to %s: exit %d: %s", from, to, code, moveErr)
	}
	if g := b.Listed(t)["web1"]; g.Member != to || g.State != api.StateRunning {
		t.Fatalf("web1 after its move to %s: %+v", to, g)
	}

	testHAFailover(t, lab, a, b, c)
	testPartition(t, lab, a, b, c)
	testForeignMember(t, lab, a)

	// Removal: refused while the member has guests, then forced; the
	// member leaves and keeps its guests as its own.
	a.Must(t, "launch", "busybox", "kept", "--target", "c")
	expectError(t, a.Daemon, "member c still runs", "cluster", "remove", "c")
	a.Must(t, "cluster", "remove", "c", "--force")
	testenv.Eventually(t, 30*time.Second, "c out of the cluster", func() error {
		if _, errOut, code := c.Run("cluster", "list"); code == 0 || !strings.Contains(errOut, "in no cluster") {
			return fmt.Errorf("c's cluster list: exit %d: %s", code, errOut)
		}
		return nil
	})
	if view := a.Cluster(t); len(view.Members) != 2 {
		t.Errorf("members after c's removal: %+v", view.Members)
	}
	if _, listed := a.Listed(t)["kept"]; listed {
		t.Errorf("a lists the guest of a removed member")
	}
	if g := c.Listed(t)["kept"]; g.State != api.StateRunning {
		t.Errorf("c's own guest after it left: %+v", g)
	}
}

// An HA guest on c runs again on a or b, from its replica, within 30 s of
// c's death; c comes back without a second copy.
func testHAFailover(t *testing.T, lab *testenv.ClusterLab, a, b, c *testenv.Member) {
	a.Must(t, "launch", "busybox", "ha1", "--target", "c", "--ha")
	c.Must(t, "exec", "ha1", "--", "sh", "-c", "echo kept > /root/marker && sync")
	testenv.WaitReplica(t, "ha1", time.Now(), a, b)
	// c dies as a host does: its daemon and every process of its guests.
	c.Die(t, a)
	took := testenv.Eventually(t, 30*time.Second, "ha1 running again on a or b", func() error {
		g := a.Listed(t)["ha1"]
		if g.State != api.StateRunning || g.Member == "c" {
			return fmt.Errorf("ha1: %s on %s", g.State, g.Member)
		}
		return nil
	})
	t.Logf("failover: ha1 ran again %s after c was killed", took.Round(time.Millisecond))
	if out := b.Must(t, "exec", "ha1", "--", "cat", "/root/marker"); out != "kept\n" {
		t.Errorf("ha1's replicated file after the failover: %q", out)
	}
	for _, m := range b.Cluster(t).Members {
		if m.Name == "c" && m.Health != api.MemberOffline {
			t.Errorf("c after its death: %+v", m)
		}
	}
	// c comes back: it rejoins and drops its stale copy.
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "c back online without its stale copy of ha1", func() error {
		for _, m := range a.Cluster(t).Members {
			if m.Health != api.MemberOnline {
				return fmt.Errorf("member %s is %s", m.Name, m.Health)
			}
		}
		if _, err := os.Stat(filepath.Join(c.StateDir, "guests", "ha1")); err == nil {
			return fmt.Errorf("c still has ha1")
		}
		return nil
	})
	if g := c.Listed(t)["ha1"]; g.Member == "c" || g.State != api.StateRunning {
		t.Errorf("ha1 after c came back: %+v", g)
	}
}

// a, cut off from b and c, refuses writes and says so; b and c go on.
func testPartition(t *testing.T, lab *testenv.ClusterLab, a, b, c *testenv.Member) {
	// An HA guest on a, replicated to b or c: cut off, a stops it (it
	// fences itself) and the majority runs it from its replica.
	a.Must(t, "launch", "busybox", "hap", "--target", "a", "--ha")
	testenv.WaitReplica(t, "hap", time.Now(), b, c)
	lab.Cut(a, true)
	testenv.Eventually(t, 30*time.Second, "a refusing writes", func() error {
		_, errOut, code := a.Run("launch", "busybox", "minority", "--target", "a")
		if code == 0 {
			a.Run("delete", "--force", "minority")
			return fmt.Errorf("a launched a guest while cut off")
		}
		if !strings.Contains(errOut, "cannot reach a majority") {
			return fmt.Errorf("a's refusal: %s", errOut)
		}
		return nil
	})
	if view := a.Cluster(t); view.Writable {
		t.Errorf("a cut off says it is writable: %+v", view)
	}
	b.Must(t, "launch", "busybox", "majority", "--target", "c")
	lab.Cut(a, false)
	testenv.Eventually(t, 60*time.Second, "a writable again", func() error {
		if view := a.Cluster(t); !view.Writable {
			return fmt.Errorf("%s", view.Reason)
		}
		return nil
	})
	if g := a.Listed(t)["majority"]; g.Member != "c" || g.State != api.StateRunning {
		t.Errorf("the majority's guest seen from a: %+v", g)
	}
	a.Must(t, "delete", "--force", "majority")
	testenv.Eventually(t, 30*time.Second, "hap running on b or c alone, a's copy gone", func() error {
		if _, err := os.Stat(filepath.Join(a.StateDir, "guests", "hap")); err == nil {
			return fmt.Errorf("a still has its copy of hap")
		}
		if g := b.Listed(t)["hap"]; g.State != api.StateRunning || g.Member == "a" {
			return fmt.Errorf("hap: %s on %s", g.State, g.Member)
		}
		return nil
	})
	if out := a.Must(t, "exec", "hap", "--", "hostname"); strings.TrimSpace(out) != "hap" {
		t.Errorf("exec hap after the partition: %q", out)
	}
	a.Must(t, "delete", "--force", "hap")
}

// A member of another cluster is a stranger: its certificates reach
// neither this cluster's etcd nor the members' routes.
func testForeignMember(t *testing.T, lab *testenv.ClusterLab, a *testenv.Member) {
	x := lab.Member("x")
	late := strings.TrimSpace(a.Must(t, "cluster", "add", "x", "--expiry", "1s"))
	time.Sleep(1500 * time.Millisecond)
	expectError(t, x.Daemon, "the join token expired", "cluster", "join", late)
	x.Must(t, "cluster", "init", "--member", "x")
	ours := filepath.Join(a.StateDir, "cluster")
	theirs := filepath.Join(x.StateDir, "cluster")
	keys, err := etcdKeys(a.Addr, ours, ours, "/polyvisor/state/")
	if err != nil {
		t.Fatalf("a's own member certificate does not reach its etcd: %v", err)
	}
	// Each member's state is in the store: a's template catalogue, and
	// ha1's definition where it runs now.
	published := map[string]bool{}
	for _, k := range keys {
		published[k] = true
	}
	ha1 := a.Listed(t)["ha1"].Member
	if !published["/polyvisor/state/a/templates/busybox"] || !published["/polyvisor/state/"+ha1+"/guests/ha1"] {
		t.Errorf("the members' published state (ha1 on %s): %v", ha1, keys)
	}
	if _, err := etcdKeys(a.Addr, theirs, ours, "/polyvisor/"); err == nil {
		t.Errorf("a foreign member's certificate reached a's etcd")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(x.StateDir, "tls", "server.crt"), filepath.Join(x.StateDir, "tls", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}}}
	for _, req := range []struct{ method, path string }{
		{http.MethodPut, "/1.0/cluster/replicas/evil"},
		{http.MethodPost, "/1.0/cluster/leave"},
		{http.MethodGet, "/1.0/guests"},
	} {
		r, _ := http.NewRequest(req.method, "https://"+a.Addr+":8443"+req.path, strings.NewReader("{}"))
		r.Header.Set("X-Polyvisor-Forwarded-By", "x")
		resp, err := hc.Do(r)
		if err != nil {
			t.Fatalf("%s %s: %v", req.method, req.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s with a foreign member's certificate: %s, want 403", req.method, req.path, resp.Status)
		}
	}
}

// etcdKeys lists the keys under prefix in the etcd at addr, with the
// member key pair kept in certDir, trusting the authority kept in caDir.
func etcdKeys(addr, certDir, caDir, prefix string) ([]string, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "member.crt"), filepath.Join(certDir, "member.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + addr + ":2379"}, DialTimeout: 3 * time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys, nil
}

// The default network spans the members: a guest on a pings one on c by
// name; a running VM moves live from a to b, a counter in it counting on.
func TestClusterNetworkAndLiveMove(t *testing.T) {
	requireVMTemplates(t)
	lab := testenv.NewClusterLab(t, env.bin)
	a := lab.Member("a", "--default-network", "polyvisor0")
	b := lab.Member("b", "--default-network", "polyvisor0")
	c := lab.Member("c", "--default-network", "polyvisor0")
	a.Must(t, "template", "build", "busybox")
	copyTemplate(t, env.main, a.Daemon, "busybox.vm.amd64")
	lab.Form([]*testenv.Member{a, b, c}, "--offline-after", "5s", "--replicate-every", "2s")

	a.Must(t, "launch", "busybox", "n1", "--target", "a")
	a.Must(t, "launch", "busybox", "n3", "--target", "c")
	addr3 := waitForAddress(t, a.Daemon, "n3")
	if addr1 := waitForAddress(t, a.Daemon, "n1"); addr1 == addr3 {
		t.Fatalf("n1 and n3 share an address: %s", addr1)
	}
	testenv.Eventually(t, 30*time.Second, "n1 on a pinging n3 on c by name", func() error {
		out, errOut, code := a.Run("exec", "n1", "--", "busybox", "ping", "-c", "1", "-W", "2", "n3.polyvisor")
		if code != 0 || !strings.Contains(out, addr3) {
			return fmt.Errorf("exit %d: %s%s", code, out, errOut)
		}
		return nil
	})

	a.Must(t, "launch", "busybox", "vm1", "--type", "vm", "--memory", "256MiB", "--target", "a")
	a.Must(t, "exec", "vm1", "--", "sh", "-c", `setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.2; done' </dev/null >/dev/null 2>&1 &`)
	count := func() int {
		t.Helper()
		var n int
		out := a.Must(t, "exec", "vm1", "--", "cat", "/tmp/c")
		if _, err := fmt.Sscan(out, &n); err != nil {
			t.Fatalf("vm1's counter: %q", out)
		}
		return n
	}
	time.Sleep(time.Second)
	before := count()
	_, moveErr, code := a.Run("move", "vm1", "--target", "b")
	if code != 0 || !strings.Contains(moveErr, "moved live") {
		t.Fatalf("move vm1 to b: exit %d: %s", code, moveErr)
	}
	t.Logf("move: %s", strings.TrimSpace(moveErr))
	if g := c.Listed(t)["vm1"]; g.Member != "b" || g.State != api.StateRunning {
		t.Fatalf("vm1 after its move: %+v", g)
	}
	first := count()
	time.Sleep(time.Second)
	if second := count(); !(before < first && first < second) {
		t.Errorf("vm1's counter: %d before the move, then %d and %d a second apart: it restarted or stopped", before, first, second)
	}
	if _, err := os.Stat(filepath.Join(a.StateDir, "guests", "vm1")); err == nil {
		t.Errorf("vm1 is still on a after its move")
	}
	a.Must(t, "delete", "--force", "vm1")
}
