package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// importDiskSize is the disk BenchmarkImportExport moves: the 1 GiB,
// filled with incompressible data so that neither side skips zeroes.
const importDiskSize = 1 << 30

// importRuns bounds the runs of each side: a run moves a GiB several
// times, so make bench's 20x would take a quarter of an hour.
const importRuns = 5

// BenchmarkImportExport times `polyvisor import` of a 1 GiB VMDK against
// `qemu-img convert` of the same file to qcow2, and `polyvisor export
// --format ova` of a guest on it against `qemu-img convert` of its disk to
// a streamOptimized VMDK (the OVA's disk), alternating in the same run.
func BenchmarkImportExport(b *testing.B) {
	f := openFixture(b, "import-export")
	dir := filepath.Join(f.dir, "import")
	vmdk := filepath.Join(dir, "big.vmdk")
	if f.memo == nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		raw := filepath.Join(dir, "big.img")
		if err := writeRandomDisk(raw, importDiskSize); err != nil {
			b.Fatal(err)
		}
		if err := run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, vmdk); err != nil {
			b.Fatal(err)
		}
		os.Remove(raw)
		f.memo = true
	}
	ctx := b.Context()
	var imp, impBase, exp, expBase samples
	timed := func(s *samples, fn func() error) {
		began := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		*s = append(*s, time.Since(began))
	}
	b.ResetTimer()
	for i := range min(b.N, importRuns) {
		name := fmt.Sprintf("imp-%d-%d", b.N, i)
		polyvisorImport := func() error {
			return f.operation(ctx, func() (api.Operation, error) {
				return f.client.Import(ctx, api.Import{Path: vmdk, Name: name, Networks: []string{"none"}})
			})
		}
		// Outputs are removed after the round, untimed, as the imported
		// guest and template are: deleting a GiB is no part of either side.
		baseOut, ova, streamOut := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, name+".ova"), filepath.Join(dir, "base-stream.vmdk")
		baseImport := func() error {
			return run("qemu-img", "convert", "-f", "vmdk", "-O", "qcow2", vmdk, baseOut)
		}
		polyvisorExport := func() error {
			return f.operation(ctx, func() (api.Operation, error) {
				return f.client.Export(ctx, name, api.Export{Path: ova, Format: "ova"})
			})
		}
		var disk string // the imported guest's, found before the timed export
		findDisk := func() {
			var err error
			if disk, err = f.diskPath(ctx, name, "root"); err != nil {
				b.Fatal(err)
			}
		}
		baseExport := func() error {
			return run("qemu-img", "convert", "-f", "qcow2", "-O", "vmdk", "-o", "subformat=streamOptimized", disk, streamOut)
		}
		if i%2 == 0 {
			timed(&imp, polyvisorImport)
			timed(&impBase, baseImport)
			findDisk()
			timed(&exp, polyvisorExport)
			timed(&expBase, baseExport)
		} else {
			timed(&impBase, baseImport)
			timed(&imp, polyvisorImport)
			findDisk()
			timed(&expBase, baseExport)
			timed(&exp, polyvisorExport)
		}
		for _, out := range []string{baseOut, ova, streamOut} {
			if err := os.Remove(out); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.operation(ctx, func() (api.Operation, error) { return f.client.DeleteGuest(ctx, name, false) }); err != nil {
			b.Fatal(err)
		}
		if err := f.client.DeleteTemplate(ctx, name+".vm.amd64"); err != nil {
			b.Fatal(err)
		}
	}
	mibps := func(s samples) float64 { return float64(importDiskSize>>20) / (s.median() / 1000) }
	b.ReportMetric(imp.median(), "import-ms")
	b.ReportMetric(imp.median()/impBase.median(), "import-ratio")
	b.ReportMetric(exp.median(), "export-ova-ms")
	b.ReportMetric(exp.median()/expBase.median(), "export-ratio")
	b.Logf("n=%d import: polyvisor %.0f ms (%.0f MiB/s), qemu-img convert %.0f ms (%.0f MiB/s), ratio %.2f; export ova: polyvisor %.0f ms, qemu-img convert to streamOptimized %.0f ms, ratio %.2f",
		len(imp), imp.median(), mibps(imp), impBase.median(), mibps(impBase), imp.median()/impBase.median(), exp.median(), expBase.median(), exp.median()/expBase.median())
}

// operation starts an operation and waits for it.
func (f *fixture) operation(ctx context.Context, start func() (api.Operation, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	op, err := start()
	if err != nil {
		return err
	}
	return f.client.Wait(ctx, op, nil)
}

// writeRandomDisk writes size bytes of random data to path.
func writeRandomDisk(path string, size int64) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.CopyN(out, rand.Reader, size); err != nil {
		return err
	}
	return out.Close()
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}
