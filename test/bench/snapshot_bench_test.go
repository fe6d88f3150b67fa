package bench

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// snapshotSizes are the amounts of data, in MiB, a guest has written when
// its snapshots are timed: the question is whether the times grow with it.
var snapshotSizes = []int{16, 256}

// snapshotMemo keeps a snapshot benchmark's samples, by metric name,
// across the testing package's calls of the benchmark function.
type snapshotMemo map[string]samples

func (m snapshotMemo) report(b *testing.B, prefix string) {
	b.Helper()
	for _, mib := range snapshotSizes {
		for _, what := range []string{"create-running", "create-stopped", "restore"} {
			key := fmt.Sprintf("%s-%s-%dMiB", prefix, what, mib)
			if s := m[key]; len(s) > 0 {
				b.ReportMetric(s.median(), key+"-ms")
				b.Logf("%s: n=%d min %.1f p50 %.1f max %.1f ms", key, len(s), s.percentile(0), s.median(), s.percentile(100))
			}
		}
	}
}

// timeOp times one API operation through to its end.
func (f *fixture) timeOp(ctx context.Context, start func() (api.Operation, error)) (time.Duration, error) {
	began := time.Now()
	op, err := start()
	if err == nil {
		err = f.client.Wait(ctx, op, nil)
	}
	return time.Since(began), err
}

// waitOp runs one API operation, untimed.
func (f *fixture) waitOp(ctx context.Context, start func() (api.Operation, error)) error {
	_, err := f.timeOp(ctx, start)
	return err
}

func (f *fixture) setState(ctx context.Context, name, action string) error {
	return f.waitOp(ctx, func() (api.Operation, error) {
		return f.client.ChangeState(ctx, name, api.StateChange{Action: action, Force: true})
	})
}

// BenchmarkSnapshotContainer times a busybox overlay container's snapshot
// while it runs (frozen while its upper dir is copied) and the restore of
// the stopped guest, with 16 and 256 MiB of data in files it wrote: with
// the default disk quota ("ct", the upper dir in an ext4 image on a loop
// device, mounted only while the guest runs or for the restore) and with
// --disk none ("ctplain", the upper dir on the host's file system), in the
// same run.
func BenchmarkSnapshotContainer(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "snapshotct")
	m, _ := f.memo.(snapshotMemo)
	kinds := map[string]string{"ct": "", "ctplain": "none"} // name prefix: --disk
	if m == nil {
		m = snapshotMemo{}
		f.memo = m
		for prefix, disk := range kinds {
			for _, mib := range snapshotSizes {
				name := fmt.Sprintf("%s-%d", prefix, mib)
				if err := f.createGuest(b.Context(), api.GuestCreate{Name: name, Template: "busybox", Networks: []string{"none"}, Start: true, Disk: disk}); err != nil {
					b.Fatal(err)
				}
				// Written by the guest into its upper dir, untimed.
				if out, errOut, code := f.daemon.Run("exec", name, "--", "dd", "if=/dev/urandom", "of=/root/data", "bs=1M", fmt.Sprintf("count=%d", mib)); code != 0 {
					b.Fatalf("write %d MiB in %s: %s%s", mib, name, out, errOut)
				}
				if err := f.setState(b.Context(), name, "stop"); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for range b.N {
		for _, mib := range snapshotSizes {
			for _, prefix := range []string{"ct", "ctplain"} {
				name := fmt.Sprintf("%s-%d", prefix, mib)
				ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
				err := f.setState(ctx, name, "start")
				var create, restore time.Duration
				if err == nil {
					create, err = f.timeOp(ctx, func() (api.Operation, error) { return f.client.CreateSnapshot(ctx, name, "s") })
				}
				if err == nil {
					err = f.setState(ctx, name, "stop")
				}
				if err == nil {
					restore, err = f.timeOp(ctx, func() (api.Operation, error) { return f.client.RestoreSnapshot(ctx, name, "s") })
				}
				if err == nil {
					err = f.waitOp(ctx, func() (api.Operation, error) { return f.client.DeleteSnapshot(ctx, name, "s") })
				}
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				createKey, restoreKey := fmt.Sprintf("%s-create-running-%dMiB", prefix, mib), fmt.Sprintf("%s-restore-%dMiB", prefix, mib)
				m[createKey] = append(m[createKey], create)
				m[restoreKey] = append(m[restoreKey], restore)
			}
		}
	}
	m.report(b, "ct")
	m.report(b, "ctplain")
}

// BenchmarkSnapshotVM times a busybox VM's qcow2 internal snapshot while
// it runs (agent sync, pause, snapshot, resume) and while it is stopped
// (qemu-img), and the restore of the stopped one, with 16 and 256 MiB of
// data written into its root overlay.
func BenchmarkSnapshotVM(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "snapshotvm")
	m, _ := f.memo.(snapshotMemo)
	if m == nil {
		f.buildVMTemplates(b, "amd64")
		m = snapshotMemo{}
		f.memo = m
		ctx, cancel := context.WithTimeout(b.Context(), 4*opTimeout)
		defer cancel()
		for _, mib := range snapshotSizes {
			for _, state := range []string{"off", "run"} {
				name := fmt.Sprintf("%s-%d", state, mib)
				if err := f.prepareDataVM(ctx, name, mib); err != nil {
					b.Fatal(err)
				}
				if state == "run" {
					if err := f.setState(ctx, name, "start"); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	for range b.N {
		for _, mib := range snapshotSizes {
			ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
			run, off := fmt.Sprintf("run-%d", mib), fmt.Sprintf("off-%d", mib)
			running, err := f.timeOp(ctx, func() (api.Operation, error) { return f.client.CreateSnapshot(ctx, run, "s") })
			if err == nil {
				err = f.waitOp(ctx, func() (api.Operation, error) { return f.client.DeleteSnapshot(ctx, run, "s") })
			}
			var stopped, restore time.Duration
			if err == nil {
				stopped, err = f.timeOp(ctx, func() (api.Operation, error) { return f.client.CreateSnapshot(ctx, off, "s") })
			}
			if err == nil {
				restore, err = f.timeOp(ctx, func() (api.Operation, error) { return f.client.RestoreSnapshot(ctx, off, "s") })
			}
			if err == nil {
				err = f.waitOp(ctx, func() (api.Operation, error) { return f.client.DeleteSnapshot(ctx, off, "s") })
			}
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			m[fmt.Sprintf("vm-create-running-%dMiB", mib)] = append(m[fmt.Sprintf("vm-create-running-%dMiB", mib)], running)
			m[fmt.Sprintf("vm-create-stopped-%dMiB", mib)] = append(m[fmt.Sprintf("vm-create-stopped-%dMiB", mib)], stopped)
			m[fmt.Sprintf("vm-restore-%dMiB", mib)] = append(m[fmt.Sprintf("vm-restore-%dMiB", mib)], restore)
		}
	}
	m.report(b, "vm")
}

// prepareDataVM creates a stopped busybox VM whose root overlay holds mib
// MiB of data the guest did not write through its file system: the disk
// is grown to 512 MiB and qemu-io fills a range past the file system's
// end, which the guest ignores (and grows its file system over at boot).
func (f *fixture) prepareDataVM(ctx context.Context, name string, mib int) error {
	if err := f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Type: "vm", Networks: []string{"none"}}); err != nil {
		return err
	}
	if _, err := f.client.SetConfig(ctx, name, api.ConfigChange{Set: map[string]string{"disk.root.size": "512MiB"}}); err != nil {
		return err
	}
	disk, err := f.diskPath(ctx, name, "root")
	if err != nil {
		return err
	}
	write := fmt.Sprintf("write -q -P 0x5a 128M %dM", mib)
	if out, err := exec.CommandContext(ctx, "qemu-io", "-f", "qcow2", "-c", write, disk).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-io %s: %v: %s", disk, err, out)
	}
	return nil
}
