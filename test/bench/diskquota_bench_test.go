package bench

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// diskWriteMiB is what each disk write sample writes, and fsyncs.
const diskWriteMiB = 256

// BenchmarkDiskWriteQuota compares a busybox container's write throughput
// with its upper dir in a disk quota image (ext4 on a loop device on a
// sparse file, the default) and on the host's file system (--disk none),
// in the same run: dd of 256 MiB from /dev/zero with conv=fsync, timed by
// busybox time -p inside the guest. The two alternate which goes first.
func BenchmarkDiskWriteQuota(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "diskwrite")
	if f.memo == nil {
		for name, disk := range map[string]string{"dw-quota": "2GiB", "dw-plain": "none"} {
			req := api.GuestCreate{Name: name, Template: "busybox", Start: true, Networks: []string{"none"}, Memory: "512MiB", Disk: disk}
			if err := f.createGuest(b.Context(), req); err != nil {
				b.Fatal(err)
			}
		}
		f.memo = true
	}
	var quota, plain samples
	for i := range b.N {
		order := []string{"dw-quota", "dw-plain"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, name := range order {
			took := ddWrite(b, f, name)
			if name == "dw-quota" {
				quota = append(quota, took)
			} else {
				plain = append(plain, took)
			}
		}
	}
	mibps := func(s samples) float64 { return diskWriteMiB / (s.median() / 1000) }
	b.ReportMetric(mibps(quota), "quota-MiB/s")
	b.ReportMetric(mibps(plain), "plain-MiB/s")
	b.ReportMetric(mibps(quota)/mibps(plain), "quota-ratio")
	b.Logf("n=%d, %d MiB with conv=fsync, MiB/s (medians): quota image %.0f, plain overlay %.0f, ratio %.2f; seconds p10/p50/p90: quota %.2f/%.2f/%.2f, plain %.2f/%.2f/%.2f",
		b.N, diskWriteMiB, mibps(quota), mibps(plain), mibps(quota)/mibps(plain),
		quota.percentile(10)/1000, quota.median()/1000, quota.percentile(90)/1000,
		plain.percentile(10)/1000, plain.median()/1000, plain.percentile(90)/1000)
}

// ddWrite writes diskWriteMiB MiB in guest name with dd conv=fsync, removes
// the file again, and returns the time busybox time -p reports for the dd.
func ddWrite(b *testing.B, f *fixture, name string) time.Duration {
	b.Helper()
	script := fmt.Sprintf("busybox time -p dd if=/dev/zero of=/root/w bs=1M count=%d conv=fsync 2>&1; rm -f /root/w; sync", diskWriteMiB)
	out, errOut, code := f.daemon.Run("exec", name, "--", "sh", "-c", script)
	if code != 0 {
		b.Fatalf("dd in %s: exit %d: %s%s", name, code, out, errOut)
	}
	m := realSeconds.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("dd in %s said %q: no time in it", name, out)
	}
	seconds, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(seconds * float64(time.Second))
}

// BenchmarkLaunchDiskQuota compares the latency of launching a busybox
// container (create + start until init runs, through the API) with the
// default disk quota (mke2fs of a sparse 10 GiB image, a loop device and a
// mount more) and with --disk none, in the same run, alternating which
// goes first; each guest is deleted after, untimed.
func BenchmarkLaunchDiskQuota(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "launchquota")
	seq, _ := f.memo.(int)
	var quota, plain samples
	for i := range b.N {
		order := []string{"", "none"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, disk := range order {
			seq++
			name := fmt.Sprintf("lq-%d", seq)
			began := time.Now()
			err := f.createGuest(b.Context(), api.GuestCreate{Name: name, Template: "busybox", Start: true, Networks: []string{"none"}, Disk: disk})
			took := time.Since(began)
			if err != nil {
				b.Fatal(err)
			}
			if disk == "" {
				quota = append(quota, took)
			} else {
				plain = append(plain, took)
			}
			if _, errOut, code := f.daemon.Run("delete", "--force", name); code != 0 {
				b.Fatalf("delete %s: %s", name, errOut)
			}
		}
	}
	f.memo = seq
	b.ReportMetric(quota.median(), "quota-ms")
	b.ReportMetric(plain.median(), "plain-ms")
	b.ReportMetric(quota.median()/plain.median(), "quota-ratio")
	b.Logf("n=%d launch ms (p10/p50/p90): default quota %.0f/%.0f/%.0f, --disk none %.0f/%.0f/%.0f, ratio of medians %.2f",
		b.N, quota.percentile(10), quota.median(), quota.percentile(90), plain.percentile(10), plain.median(), plain.percentile(90), quota.median()/plain.median())
}
