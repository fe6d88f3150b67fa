package bench

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
)

// diskWriteMiB is what each disk write sample writes, and fsyncs.
const diskWriteMiB = 256

// busyboxDDTime finds the seconds in busybox dd's summary line:
// "268435456 bytes (256.0MB) copied, 0.497862 seconds, 514.2MB/s".
var busyboxDDTime = regexp.MustCompile(`copied, ([0-9.]+) seconds`)

// BenchmarkDiskWriteQuota compares a busybox container's write throughput
// with its upper dir in a disk quota image (ext4 on a loop device on a
// sparse file, the default) and on the host's file system (--disk none),
// in the same run: dd of 256 MiB from /dev/zero with conv=fsync, timed by
// dd itself inside the guest. The two alternate which goes first.
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
// the file again, and returns the time dd reports.
func ddWrite(b *testing.B, f *fixture, name string) time.Duration {
	b.Helper()
	script := fmt.Sprintf("dd if=/dev/zero of=/root/w bs=1M count=%d conv=fsync 2>&1; rm -f /root/w; sync", diskWriteMiB)
	out, errOut, code := f.daemon.Run("exec", name, "--", "sh", "-c", script)
	if code != 0 {
		b.Fatalf("dd in %s: exit %d: %s%s", name, code, out, errOut)
	}
	m := busyboxDDTime.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("dd in %s said %q: no time in it", name, out)
	}
	seconds, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(seconds * float64(time.Second))
}
