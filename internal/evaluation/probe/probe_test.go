package probe

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// spawnLogEnv names a file to which the test binary, run by proc.spawn
// with ExitArg, appends a byte: the count of real spawns.
const spawnLogEnv = "POLYVISOR_PROBE_TEST_SPAWNS"

// TestMain answers ExitArg as polyvisor-probe does, since proc.spawn runs
// /proc/self/exe: the test binary here.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == ExitArg {
		if path := os.Getenv(spawnLogEnv); path != "" {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				os.Exit(1)
			}
			f.Write([]byte{'.'})
			f.Close()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startSink starts a Serve sink on a loopback port for the test and returns
// its address.
func startSink(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// directWorks says whether dir's file system takes O_DIRECT reads and
// writes, found independently of the probe.
func directWorks(t *testing.T, dir string) bool {
	t.Helper()
	path := filepath.Join(dir, "direct-check")
	defer os.Remove(path)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_DIRECT, 0o600)
	if errors.Is(err, unix.EINVAL) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	_, err = unix.Pwrite(fd, buf, 0)
	return !errors.Is(err, unix.EINVAL)
}

// checkRuns fails t unless res holds a figure: no error, a positive
// median between min and max, and runs of the quick size.
func checkRuns(t *testing.T, res Result) {
	t.Helper()
	if res.Error != "" {
		t.Errorf("%s: error %q", res.Name, res.Error)
		return
	}
	if res.Median <= 0 || res.Min > res.Median || res.Median > res.Max {
		t.Errorf("%s: median %v min %v max %v", res.Name, res.Median, res.Min, res.Max)
	}
	if len(res.Runs) != sizes[SizeQuick].runs {
		t.Errorf("%s: %d runs, want %d", res.Name, len(res.Runs), sizes[SizeQuick].runs)
	}
	if res.Unit == "" {
		t.Errorf("%s: no unit", res.Name)
	}
}

// TestRunQuick runs every workload at the quick size, net.tcp against an
// in-process sink, and checks each result, the spawns, the disk file's
// removal and the JSON.
func TestRunQuick(t *testing.T) {
	peer := startSink(t)
	spawns := filepath.Join(t.TempDir(), "spawns")
	t.Setenv(spawnLogEnv, spawns)
	dir := t.TempDir()

	start := time.Now()
	out := Run(context.Background(), Options{Size: SizeQuick, Dir: dir, Peer: peer})
	// A sanity bound with a wide margin on a shared machine (about 6 s
	// here), not a performance test.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the quick run took %v, want well under 20 s", d)
	}

	if out.Probe != "polyvisor-probe" || out.Version != 1 || out.Size != SizeQuick || out.Arch == "" || out.Kernel == "" || out.CPUs < 1 || out.GOARCH == "" {
		t.Errorf("header %+v", out)
	}
	if out.DiskDir != dir || out.DiskFS == "" {
		t.Errorf("disk dir %q (%q), want %q", out.DiskDir, out.DiskFS, dir)
	}
	var names []string
	for _, res := range out.Results {
		names = append(names, res.Name)
		checkRuns(t, res)
	}
	if !slices.Equal(names, Names()) {
		t.Errorf("results %v, want %v", names, Names())
	}

	direct := directWorks(t, dir)
	for _, res := range out.Results {
		if !isDisk(res.Name) || res.Name == DiskFsync {
			continue
		}
		if says := strings.Contains(res.Note, "O_DIRECT refused"); says == direct {
			t.Errorf("%s: O_DIRECT works here: %v, but the note says %q", res.Name, direct, res.Note)
		}
	}

	b, err := os.ReadFile(spawns)
	if err != nil {
		t.Fatal(err)
	}
	// At least one spawn for the warm-up and one for each run.
	if len(b) < 1+sizes[SizeQuick].runs {
		t.Errorf("proc.spawn spawned %d times", len(b))
	}

	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in the disk dir: %v", left)
	}

	j, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var back Output
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, out) {
		t.Errorf("JSON round trip:\n got %+v\nwant %+v", back, out)
	}
}

// TestBufferedFallback runs the disk workloads as they run where O_DIRECT
// is refused, and checks that they measure and say so.
func TestBufferedFallback(t *testing.T) {
	dir := t.TempDir()
	r := &runner{size: sizes[SizeQuick], dir: dir}
	for _, w := range workloads {
		if !isDisk(w.name) {
			continue
		}
		runs, note, err := w.run(context.Background(), r)
		res := Result{Name: w.name, Unit: w.unit, Note: note}
		if err == nil {
			err = summarize(&res, runs)
		}
		if err != nil {
			res.Error = err.Error()
		}
		checkRuns(t, res)
		if w.name != DiskFsync && !strings.Contains(note, "O_DIRECT not tried") || strings.Contains(note, "O_DIRECT refused") {
			t.Errorf("%s: note %q", w.name, note)
		}
	}
	if r.disk == nil || r.disk.direct {
		t.Fatalf("disk file %+v, want buffered", r.disk)
	}
	r.close()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in the disk dir: %v", left)
	}
}

// TestFailures checks that failing workloads carry an error, never a
// zero figure, and that the others still run.
func TestFailures(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	out := Run(context.Background(), Options{
		Size: SizeQuick,
		Dir:  missing,
		Only: []string{Syscall, DiskSeqWrite, DiskSeqRead, DiskRandRead, DiskFsync, NetTCP, "cpu.bogus"},
	})
	want := map[string]string{
		DiskSeqWrite: "no such file or directory",
		DiskSeqRead:  "no such file or directory",
		DiskRandRead: "no such file or directory",
		DiskFsync:    "no such file or directory",
		NetTCP:       "no peer given",
		"cpu.bogus":  "unknown workload",
	}
	if len(out.Results) != len(want)+1 {
		t.Fatalf("%d results, want %d", len(out.Results), len(want)+1)
	}
	for _, res := range out.Results {
		if res.Name == Syscall {
			checkRuns(t, res)
			continue
		}
		if !strings.Contains(res.Error, want[res.Name]) || res.Median != 0 || res.Runs != nil {
			t.Errorf("%s: error %q median %v runs %v, want an error with %q and no figures", res.Name, res.Error, res.Median, res.Runs, want[res.Name])
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the missing dir: %v", err)
	}
}

func TestCanceledAndBadOptions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		opts Options
		err  string
	}{
		{ctx, Options{Size: SizeQuick, Only: []string{CPUInt, DiskSeqWrite}}, "context canceled"},
		{context.Background(), Options{Size: "huge", Only: []string{CPUInt}}, `unknown size "huge"`},
	} {
		out := Run(tc.ctx, tc.opts)
		if len(out.Results) != len(tc.opts.Only) {
			t.Fatalf("%+v: %d results", tc.opts, len(out.Results))
		}
		for _, res := range out.Results {
			if !strings.Contains(res.Error, tc.err) || res.Runs != nil {
				t.Errorf("%s: error %q runs %v, want %q", res.Name, res.Error, res.Runs, tc.err)
			}
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		ok   bool
	}{
		{Options{}, true},
		{Options{Size: SizeThorough, Only: []string{NetTCP, CPUInt}}, true},
		{Options{Size: "huge"}, false},
		{Options{Only: []string{"cpu.bogus"}}, false},
	} {
		if err := tc.opts.Check(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.opts, err)
		}
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		runs             []float64
		median, min, max float64
		err              bool
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, false},
		{[]float64{4, 1, 2, 3}, 2.5, 1, 4, false},
		{[]float64{5}, 5, 5, 5, false},
		{nil, 0, 0, 0, true},
		{[]float64{1, 0, 2}, 0, 0, 0, true},
		{[]float64{1, math.Inf(1), 2}, 0, 0, 0, true},
	} {
		var res Result
		err := summarize(&res, tc.runs)
		if (err != nil) != tc.err || res.Median != tc.median || res.Min != tc.min || res.Max != tc.max {
			t.Errorf("%v: %+v, %v", tc.runs, res, err)
		}
		if err == nil && !slices.Equal(res.Runs, tc.runs) {
			t.Errorf("%v: runs reordered to %v", tc.runs, res.Runs)
		}
	}
}

// TestServeCounts speaks the sink's protocol by hand.
func TestServeCounts(t *testing.T) {
	conn, err := net.Dial("tcp", startSink(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(make([]byte, 300000)); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != fmt.Sprintln(300000) {
		t.Errorf("answer %q, %v", line, err)
	}
}
