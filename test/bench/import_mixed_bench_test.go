package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
)

// importRounds bounds BenchmarkImport's rounds: each converts 1 GiB three
// times.
const importRounds = 11

// BenchmarkImport times `polyvisor import` of a 1 GiB VMDK holding mixed
// content, as a used disk does (see writeMixedDisk), against `qemu-img
// convert` of the same file to qcow2, the template's format: the import as
// a template alone, and as a guest (the default: a template and a guest on
// it). The three run in each round, their order rotating; the figures are
// medians, and the ratios qemu-img's time over polyvisor's: throughput
// relative to qemu-img.
func BenchmarkImport(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "import")
	dir := filepath.Join(f.dir, "import")
	vmdk := filepath.Join(dir, "mixed.vmdk")
	type memo struct{ convert, asTemplate, asGuest samples }
	m, _ := f.memo.(*memo)
	if m == nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		raw := filepath.Join(dir, "mixed.img")
		if err := writeMixedDisk(raw, importDiskSize); err != nil {
			b.Fatal(err)
		}
		if err := run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, vmdk); err != nil {
			b.Fatal(err)
		}
		os.Remove(raw)
		m = &memo{}
		f.memo = m
	}
	ctx := b.Context()
	// Each side's output is removed after the round, untimed, as the
	// templates are: deleting a GiB is no part of either.
	converted := filepath.Join(dir, "converted.qcow2")
	convert := func(int) error {
		return run("qemu-img", "convert", "-f", "vmdk", "-O", "qcow2", vmdk, converted)
	}
	polyvisorImport := func(as string) func(int) error {
		return func(i int) error {
			name := fmt.Sprintf("mixed-%s-%d", as, i)
			args := []string{"import", vmdk, name, "--as", as}
			if as == "guest" {
				args = append(args, "--network", "none")
			}
			if out, errOut, code := f.daemon.Run(args...); code != 0 {
				return fmt.Errorf("polyvisor %v: exit %d: %s%s", args, code, out, errOut)
			}
			return nil
		}
	}
	sides := []struct {
		s   *samples
		run func(int) error
	}{{&m.convert, convert}, {&m.asTemplate, polyvisorImport("template")}, {&m.asGuest, polyvisorImport("guest")}}
	for range min(b.N, importRounds) {
		i := len(m.convert)
		for k := range sides {
			side := sides[(i+k)%len(sides)]
			began := time.Now()
			if err := side.run(i); err != nil {
				b.Fatal(err)
			}
			*side.s = append(*side.s, time.Since(began))
		}
		if err := os.Remove(converted); err != nil {
			b.Fatal(err)
		}
		if err := testenv.DeleteGuest(ctx, f.client, fmt.Sprintf("mixed-guest-%d", i)); err != nil {
			b.Fatal(err)
		}
		for _, as := range []string{"guest", "template"} {
			if err := f.client.DeleteTemplate(ctx, fmt.Sprintf("mixed-%s-%d.vm.amd64", as, i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	mibps := func(s samples) float64 { return float64(importDiskSize>>20) / (s.median() / 1000) }
	b.ReportMetric(m.convert.median(), "qemu-img-ms")
	b.ReportMetric(m.asTemplate.median(), "template-ms")
	b.ReportMetric(m.asGuest.median(), "guest-ms")
	b.ReportMetric(m.convert.median()/m.asTemplate.median(), "template-throughput-ratio")
	b.ReportMetric(m.convert.median()/m.asGuest.median(), "guest-throughput-ratio")
	b.Logf("n=%d; qemu-img convert: %.0f ms (%.0f MiB/s); polyvisor import --as template: %.0f ms (%.0f MiB/s), throughput %.2fx; --as guest: %.0f ms (%.0f MiB/s), throughput %.2fx (target >= 0.95x)",
		len(m.convert), m.convert.median(), mibps(m.convert), m.asTemplate.median(), mibps(m.asTemplate),
		m.convert.median()/m.asTemplate.median(), m.asGuest.median(), mibps(m.asGuest), m.convert.median()/m.asGuest.median())
}

// writeMixedDisk writes a raw disk of size bytes laid out as a used disk
// is, in 1 MiB blocks drawn by a seeded generator, the same every time:
// 35% never written (zeroes, a hole), 25% text, 15% machine code (this
// test binary's own bytes), 25% random bytes (compressed files).
func writeMixedDisk(path string, size int64) error {
	const block = 1 << 20
	code, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	rng := rand.New(rand.NewPCG(15, 1))
	words := []string{"the", "guest", "disk", "kernel", "systemd", "config", "value", "error", "log", "user", "module", "network", "file", "path", "=", "0x1f", "{", "}", "\n"}
	buf := make([]byte, block)
	codeAt := 0
	for off := int64(0); off < size; off += block {
		switch p := rng.IntN(100); {
		case p < 35:
			continue // a hole: the file's size is set below
		case p < 60:
			for n := 0; n < block; {
				n += copy(buf[n:], words[rng.IntN(len(words))])
				if n < block {
					buf[n] = ' '
					n++
				}
			}
		case p < 75:
			for n := 0; n < block; {
				c := copy(buf[n:], code[codeAt:])
				n += c
				codeAt = (codeAt + c) % len(code)
			}
		default:
			for i := 0; i < block; i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
		}
		if _, err := out.WriteAt(buf, off); err != nil {
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Close()
}
