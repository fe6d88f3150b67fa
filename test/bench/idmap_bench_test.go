package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// idMapKinds are the ways BenchmarkLaunchIDMaps launches a busybox guest:
// an isolated id map (the default: an idmapped mount of the template under
// the overlay), the shared one (the overlay straight over the template) and
// privileged (no user namespace; a full copy of the template, shifted back).
var idMapKinds = []struct {
	name string
	req  api.GuestCreate
}{
	{"isolated", api.GuestCreate{IDMap: idmap.Isolated}},
	{"shared", api.GuestCreate{IDMap: idmap.Shared}},
	{"privileged", api.GuestCreate{Privileged: true}},
}

// BenchmarkLaunchIDMaps compares the launch latency (create + start until
// init runs, through the API) of a busybox container with an isolated id
// map, the shared one and --privileged, in the same run: each iteration
// launches one of each, rotating which goes first, and deletes them.
func BenchmarkLaunchIDMaps(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "launch-idmaps")
	took := make([]samples, len(idMapKinds))
	seq, _ := f.memo.(int)
	b.ResetTimer()
	b.StopTimer() // each launch is timed alone below
	for i := range b.N {
		for j := range idMapKinds {
			k := (i + j) % len(idMapKinds)
			seq++
			name := fmt.Sprintf("idmap-%s-%03d", idMapKinds[k].name, seq)
			req := idMapKinds[k].req
			req.Name, req.Template, req.Start, req.Networks = name, "busybox", true, []string{"none"}
			ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
			b.StartTimer()
			began := time.Now()
			err := f.createGuest(ctx, req)
			d := time.Since(began)
			b.StopTimer()
			if err == nil {
				err = testenv.DeleteGuest(ctx, f.client, name)
			}
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			took[k] = append(took[k], d)
		}
	}
	f.memo = seq
	iso, shared, priv := took[0].median(), took[1].median(), took[2].median()
	b.ReportMetric(iso, "isolated-ms/op")
	b.ReportMetric(shared, "shared-ms/op")
	b.ReportMetric(priv, "privileged-ms/op")
	b.ReportMetric(iso/shared, "isolated/shared")
	b.ReportMetric(priv/shared, "privileged/shared")
	b.Logf("n=%d medians: isolated %.1f ms, shared %.1f ms, privileged %.1f ms; isolated/shared %.2f, privileged/shared %.2f",
		len(took[0]), iso, shared, priv, iso/shared, priv/shared)
}

// BenchmarkIDMappedMount times what an isolated overlay guest adds to a
// start: a user namespace made for the map, the idmapped mount of the
// template's tree and its removal at stop.
func BenchmarkIDMappedMount(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "launch-idmaps")
	tmpl, err := f.templateRootfs(b.Context(), "busybox")
	if err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(f.dir, "idmapped")
	if err := os.MkdirAll(target, 0o700); err != nil {
		b.Fatal(err)
	}
	to := idmap.Map{HostBase: idmap.IsolatedPool().First, Size: idmap.Size}
	var took samples
	b.ResetTimer()
	for range b.N {
		began := time.Now()
		if err := idmap.MountMapped(b.Context(), tmpl, target, idmap.Default(), to); err != nil {
			b.Fatal(err)
		}
		err := unix.Unmount(target, unix.MNT_DETACH)
		took = append(took, time.Since(began))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(took.median(), "ms/op-median")
}
