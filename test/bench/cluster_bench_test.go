package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// The cluster's costs (docs/cluster.md), each against its one-host peer
// measured in the same run: a lab of three members (each daemon in a
// network namespace of its own, on one bridge) and a fourth daemon, solo,
// in no cluster.

// clusterRuns is how many times each cluster benchmark measures, whatever
// b.N: its lab costs a minute to make, and the testing package runs a
// benchmark twice (b.N 1, then -benchtime's), so the figures of the first
// run are kept (clusterMemo) and reported again by the second.
const clusterRuns = 10

var clusterMemo = map[string][]samples{}

// memoized returns the samples a benchmark measured before, or measures
// them.
func memoized(b *testing.B, measure func() []samples) []samples {
	if s, ok := clusterMemo[b.Name()]; ok {
		return s
	}
	s := measure()
	clusterMemo[b.Name()] = s
	return s
}

// clusterLab forms a cluster of a, b and c, the template built on a, and
// starts solo beside it.
func clusterLab(b *testing.B, initFlags ...string) (members []*testenv.Member, solo *testenv.Member) {
	requireRoot(b)
	bin, err := binaries()
	if err != nil {
		b.Fatal(err)
	}
	lab := testenv.NewClusterLab(b, bin)
	a, m2, m3, s := lab.Member("a"), lab.Member("b"), lab.Member("c"), lab.Member("solo")
	a.Must(b, "template", "build", "busybox")
	s.Must(b, "template", "build", "busybox")
	members = []*testenv.Member{a, m2, m3}
	lab.Form(members, initFlags...)
	return members, s
}

// createAll creates stopped guests named names on the daemon c speaks
// to, on target's members in turn ("" for c's own).
func createAll(b *testing.B, c *client.Client, names []string, targets []string) {
	i := 0
	next := map[string]string{}
	for _, n := range names {
		next[n] = targets[i%len(targets)]
		i++
	}
	err := forEach(names, 4, func(name string) error {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		op, err := c.CreateGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Networks: []string{"none"}, Target: next[name]})
		if err != nil {
			return err
		}
		return c.Wait(ctx, op, nil)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkClusterList1000 times listing 1,000 stopped guests through
// one member while they are spread over three (each member asked in
// parallel, the answers joined) against listing 1,000 of one daemon's
// own: client.Guests, the whole API round trip, in turns.
func BenchmarkClusterList1000(b *testing.B) {
	got := memoized(b, func() []samples { return measureClusterList(b) })
	cluster, one := got[0], got[1]
	ratio := reportRatio(b, cluster, "cluster-p50-ms", one, "one-host-p50-ms")
	b.Logf("n=%d list of %d guests p50: across three members %.1f ms, on one host %.1f ms: ratio %.2f", len(cluster), listGuests, cluster.median(), one.median(), ratio)
}

func measureClusterList(b *testing.B) []samples {
	members, solo := clusterLab(b, "--offline-after", "15s")
	a := members[0].Client()
	names := guestNames("cl", listGuests)
	began := time.Now()
	createAll(b, a, names, []string{"a", "b", "c"})
	createAll(b, solo.Client(), names, []string{""})
	b.Logf("created %d guests in the cluster and %d on the solo daemon in %s", listGuests, listGuests, time.Since(began).Round(time.Second))
	var cluster, one samples
	list := func(c *client.Client, into *samples) {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		t0 := time.Now()
		gs, err := c.Guests(ctx)
		*into = append(*into, time.Since(t0))
		if err != nil || len(gs) != listGuests {
			b.Fatalf("listed %d guests (%v), want %d", len(gs), err, listGuests)
		}
	}
	for i := range 2 * clusterRuns {
		inTurns(i, func() { list(a, &cluster) }, func() { list(solo.Client(), &one) })
	}
	return []samples{cluster, one}
}

// BenchmarkClusterLaunch times a launch through member a that placement
// sends to member b, one a runs itself, and one on the solo daemon: the
// CLI's launch of a container, start to running, each deleted after.
func BenchmarkClusterLaunch(b *testing.B) {
	got := memoized(b, func() []samples { return measureClusterLaunch(b) })
	placed, local, one := got[0], got[1], got[2]
	b.ReportMetric(placed.median(), "placed-elsewhere-p50-ms")
	b.ReportMetric(local.median(), "cluster-local-p50-ms")
	b.ReportMetric(one.median(), "one-host-p50-ms")
	b.ReportMetric(placed.median()/one.median(), "placed-vs-one-host")
	b.Logf("n=%d launch p50: placed on another member %.0f ms, on the member asked %.0f ms, on a daemon in no cluster %.0f ms",
		len(placed), placed.median(), local.median(), one.median())
}

func measureClusterLaunch(b *testing.B) []samples {
	members, solo := clusterLab(b, "--offline-after", "15s")
	a := members[0]
	// Each member has the template before the clock runs.
	for _, m := range []string{"b", "c"} {
		a.Must(b, "launch", "busybox", "warm-"+m, "--network", "none", "--target", m)
		a.Must(b, "delete", "--force", "warm-"+m)
	}
	var placed, local, one samples
	launch := func(d *testenv.Member, name string, into *samples, flags ...string) {
		t0 := time.Now()
		d.Must(b, append([]string{"launch", "busybox", name, "--network", "none"}, flags...)...)
		*into = append(*into, time.Since(t0))
		d.Must(b, "delete", "--force", name)
	}
	for i := range clusterRuns {
		inTurns(i, func() {
			launch(a, fmt.Sprintf("p%d", i), &placed, "--target", "b")
			launch(a, fmt.Sprintf("l%d", i), &local, "--target", "a")
		}, func() { launch(solo, fmt.Sprintf("s%d", i), &one) })
	}
	return []samples{placed, local, one}
}

// BenchmarkClusterFailover times an HA container's failover: member c
// dies (its daemon and its guests' processes SIGKILLed), and the clock
// runs until the guest runs on a or b; c then comes back. With
// --offline-after 5s, 5 s of it is the wait for c's lease to expire.
func BenchmarkClusterFailover(b *testing.B) {
	took := memoized(b, func() []samples { return []samples{measureFailover(b)} })[0]
	b.ReportMetric(took.median(), "failover-p50-ms")
	b.ReportMetric(took.percentile(95), "failover-p95-ms")
	b.ReportMetric(took.median()-ms(failoverOffline), "after-offline-p50-ms")
	b.Logf("n=%d failover from SIGKILL to running elsewhere: p50 %.0f ms, p95 %.0f ms (of it, %s waiting for the lease to expire)", len(took), took.median(), took.percentile(95), failoverOffline)
}

// failoverOffline is the lab's --offline-after.
const failoverOffline = 5 * time.Second

func measureFailover(b *testing.B) samples {
	members, _ := clusterLab(b, "--offline-after", failoverOffline.String(), "--replicate-every", "2s")
	a, c := members[0], members[2]
	var took samples
	for i := range clusterRuns {
		name := fmt.Sprintf("ha%d", i)
		a.Must(b, "launch", "busybox", name, "--network", "none", "--target", "c", "--ha")
		testenv.WaitReplica(b, name, time.Now(), members[:2]...)
		c.Die(b, a)
		killed := time.Now()
		for {
			g, err := a.Client().Guest(b.Context(), name)
			if err == nil && g.State == api.StateRunning && g.Member != "c" {
				break
			}
			if time.Since(killed) > 2*time.Minute {
				b.Fatalf("%s did not run elsewhere within 2 minutes: %+v, %v", name, g, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		took = append(took, time.Since(killed))
		if err := c.Restart(); err != nil {
			b.Fatal(err)
		}
		testenv.Eventually(b, 2*time.Minute, "c back", func() error {
			for _, m := range a.Cluster(b).Members {
				if m.Health != api.MemberOnline {
					return fmt.Errorf("%s is %s", m.Name, m.Health)
				}
			}
			if _, err := os.Stat(filepath.Join(c.StateDir, "guests", name)); err == nil {
				return fmt.Errorf("c still has its stale %s", name)
			}
			return nil
		})
		a.Must(b, "delete", "--force", name)
	}
	return took
}
