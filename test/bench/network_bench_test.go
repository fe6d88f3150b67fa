package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"testing"

	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// BenchmarkNetworkLaunch measures what joining the default network adds to
// a busybox container's launch: each iteration launches one guest with
// the network and one without (in alternating order), and deletes both.
// It also times, for the networked guest, launch until its DHCP lease shows
// in the API. The daemon runs in a network namespace the benchmark makes.
func BenchmarkNetworkLaunch(b *testing.B) {
	if skipWhy != "" {
		b.Skip(skipWhy)
	}
	f := openNetworkFixture(b, "netlaunch")
	ctx := context.Background()
	var with, without, leased samples
	launch := func(name, net string) time.Duration {
		began := time.Now()
		if err := f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Start: true, Networks: []string{net}}); err != nil {
			b.Fatal(err)
		}
		return time.Since(began)
	}
	for i := range b.N {
		nets := []string{network.DefaultName, "none"}
		if i%2 == 1 {
			nets[0], nets[1] = nets[1], nets[0]
		}
		for _, net := range nets {
			name := fmt.Sprintf("net-%03d-%s", i, strings.TrimPrefix(net, "polyvisor"))
			began := time.Now()
			took := launch(name, net)
			if net == "none" {
				without = append(without, took)
			} else {
				with = append(with, took)
				for {
					g, err := f.client.Guest(ctx, name)
					if err != nil {
						b.Fatal(err)
					}
					if len(g.IPv4) > 0 {
						leased = append(leased, time.Since(began))
						break
					}
					if time.Since(began) > time.Minute {
						b.Fatalf("%s got no lease in a minute", name)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if err := testenv.DeleteGuest(ctx, f.client, name); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Every cycle cleaned up after itself: no guest interface, no lease.
	out, _ := exec.Command("ip", "-n", f.daemon.Netns, "-br", "link").Output()
	if strings.Contains(string(out), network.HostIfPrefix) {
		b.Errorf("guest interfaces left after %d launch/delete cycles:\n%s", b.N, out)
	}
	if n, err := f.client.Network(ctx, network.DefaultName); err != nil || len(n.Leases) != 0 {
		b.Errorf("leases left after %d launch/delete cycles: %+v, %v", b.N, n.Leases, err)
	}
	extra := with.median() - without.median()
	b.ReportMetric(with.median(), "network-ms/op")
	b.ReportMetric(without.median(), "none-ms/op")
	b.ReportMetric(extra, "extra-ms/op")
	b.ReportMetric(leased.median(), "lease-ms/op")
	b.Logf("n=%d launch with network ms: p50 %.1f p90 %.1f; without: p50 %.1f p90 %.1f; extra p50 %.1f ms (ratio %.2f); launch to lease p50 %.1f p90 %.1f ms",
		b.N, with.median(), with.percentile(90), without.median(), without.percentile(90), extra, with.median()/without.median(), leased.median(), leased.percentile(90))
}
