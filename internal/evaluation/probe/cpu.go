package probe

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// sink keeps what the kernels compute, so that no compiler drops their
// work.
var sink uint64 //nolint:unused // only written: a store to a global the compiler cannot drop

// cpuInt measures millions of xorshift64* rounds a second; a round is
// three shifts, three xors, a multiply and an add, each on the previous
// round's value.
func cpuInt(ctx context.Context, r *runner) ([]float64, string, error) {
	kernel := func(n int) error {
		x, sum := uint64(88172645463325252), uint64(0)
		for range n {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			sum += x * 0x2545F4914F6CDD1D
		}
		sink += sum
		return nil
	}
	runs, err := r.timed(ctx, kernel, perSecond(1e-6))
	return runs, "", err
}

// matN is the order of cpu.float's matrices: three of them fit in a
// core's L2 cache (96 KiB), so that it measures arithmetic, not memory.
const matN = 64

// cpuFloat measures millions of float64 operations a second, multiplying
// two matN×matN matrices (2·matN³ operations each time).
func cpuFloat(ctx context.Context, r *runner) ([]float64, string, error) {
	a, b, c := make([]float64, matN*matN), make([]float64, matN*matN), make([]float64, matN*matN)
	for i := range a {
		a[i] = 1 / float64(i+1)
		b[i] = float64(i%matN) - 0.5
	}
	kernel := func(n int) error {
		for range n {
			clear(c)
			for i := range matN {
				ci := c[i*matN : (i+1)*matN]
				for k := range matN {
					aik, bk := a[i*matN+k], b[k*matN:(k+1)*matN]
					for j := range ci {
						ci[j] += aik * bk[j]
					}
				}
			}
			sink += math.Float64bits(c[matN*matN-1])
		}
		return nil
	}
	runs, err := r.timed(ctx, kernel, perSecond(2*matN*matN*matN*1e-6))
	return runs, "", err
}

// cpuSHA256 measures MiB a second of crypto/sha256 over a 1 MiB buffer,
// with the CPU's SHA instructions where Go uses them.
func cpuSHA256(ctx context.Context, r *runner) ([]float64, string, error) {
	buf := make([]byte, 1<<20)
	fillRandom(buf)
	kernel := func(n int) error {
		for range n {
			sum := sha256.Sum256(buf)
			sink += uint64(sum[0])
		}
		return nil
	}
	runs, err := r.timed(ctx, kernel, perSecond(1))
	return runs, "", err
}

// memCopy measures MiB a second copied between two buffers far larger
// than the CPU's caches, shrunk where the machine has little memory left
// (a small guest), and says so.
func memCopy(ctx context.Context, r *runner) ([]float64, string, error) {
	size, note := r.size.copySize, ""
	if avail := memAvailable(); avail > 0 && int64(2*size) > avail/2 {
		size = max(4<<20, int(avail/4)&^(1<<20-1))
		note = fmt.Sprintf("buffers of %d MiB instead of %d: only %d MiB of memory available", size>>20, r.size.copySize>>20, avail>>20)
	}
	src, dst := make([]byte, size), make([]byte, size)
	fillRandom(src)
	kernel := func(n int) error {
		for range n {
			copy(dst, src)
		}
		sink += uint64(dst[size-1])
		return nil
	}
	runs, err := r.timed(ctx, kernel, perSecond(float64(size)/(1<<20)))
	return runs, note, err
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes, or 0.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// fillRandom fills b with xorshift64 output: data no file system, disk or
// link can compress or recognise as zeroes.
func fillRandom(b []byte) {
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		if i%8 == 0 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		b[i] = byte(x >> (8 * (i % 8)))
	}
}
