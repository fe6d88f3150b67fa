package evaluate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// benchNetwork is the isolated network bench puts its guests on: no
// uplink, no NAT, its traffic stays on the bridge in the daemon's network
// namespace.
const benchNetwork = "pv-bench-net"

// vethRange is where the baseline's veth pair takes its two addresses:
// 198.18.0.0/15 is reserved for benchmarking (RFC 2544, RFC 6890) and
// routed nowhere; a /30 of it that some route of the host or the daemon
// covers is skipped all the same.
var vethRange = netip.MustParsePrefix("198.18.0.0/15")

// Network phase timeouts.
const (
	// addressTimeout bounds the wait for a guest's DHCP lease: a TCG guest
	// boots slowly.
	addressTimeout = 3 * time.Minute
	// sinkTimeout bounds the wait for a sink to print its address.
	sinkTimeout = time.Minute
	// cleanupTimeout bounds the removal of what the phase made, which
	// runs even when the phase's ctx is cancelled.
	cleanupTimeout = 2 * time.Minute
)

// MeasureNetwork runs the network phase of bench alone: the probe's
// net.tcp over a bare veth pair, then between two guests and from the
// host to a guest of each of opts.Classes, on a network of bench's own.
// Everything it makes is removed before it returns, cancelled or not.
func MeasureNetwork(ctx context.Context, opts Options) ([]benchreport.NetPath, error) {
	r, err := newRunner(opts)
	if err != nil {
		return nil, err
	}
	return r.measureNetwork(ctx, opts.Classes), ctx.Err()
}

// measureNetwork measures the baseline, then each class's paths: two
// guests of the class on bench's isolated network (one the probe's sink,
// the other its sender), and the host, on the network's bridge, sending
// to the sink guest. Host-side commands run in the daemon's network
// namespace, where its bridges are.
func (r *runner) measureNetwork(ctx context.Context, classes []string) []benchreport.NetPath {
	paths := []benchreport.NetPath{{Name: benchreport.NetBaseline}}
	for _, class := range classes {
		paths = append(paths,
			benchreport.NetPath{Name: benchreport.GuestToGuest(class), Class: class},
			benchreport.NetPath{Name: benchreport.HostToGuest(class), Class: class})
	}
	fail := func(from int, err error) {
		for i := from; i < len(paths); i++ {
			if paths[i].Error == "" && paths[i].Reason == "" && len(paths[i].Figure.Runs) == 0 {
				paths[i].Error = err.Error()
			}
		}
	}
	hostNS, err := r.daemonNetns(ctx)
	if err != nil {
		fail(0, err)
		return paths
	}
	r.opts.Progress("network: " + benchreport.NetBaseline)
	veth, err := r.newVethPair(ctx, hostNS)
	if err != nil {
		fail(0, err)
		return paths
	}
	// The baseline is measured first, then again right before each
	// class's paths, whose ratios are taken over that measurement: a
	// change of the host's load during the phase moves both. Its row pools
	// every measurement.
	var baseRuns []float64
	var baseErrs []error
	baseline := func(ctx context.Context) *benchreport.Figure {
		f, err := veth.measure(ctx)
		if err != nil {
			baseErrs = append(baseErrs, err)
			return nil
		}
		baseRuns = append(baseRuns, f.Runs...)
		return &f
	}
	baseline(ctx)
	if len(classes) > 0 {
		if err := r.guestPaths(ctx, hostNS, paths[1:], baseline); err != nil {
			// Paths measured before a failure (deleting the network) keep
			// their figures; the failure is told all the same.
			fail(1, err)
			r.opts.Progress("network: " + err.Error())
		}
	}
	if err := veth.close(ctx); err != nil {
		baseErrs = append(baseErrs, err)
	}
	paths[0].Figure = netRunsFigure(baseRuns)
	if err := errors.Join(baseErrs...); err != nil {
		paths[0].Error = err.Error()
	}
	benchreport.SetNetRatios(paths)
	return paths
}

// daemonNetns is the path of the daemon's network namespace: bench's own
// when the daemon runs in it, another when the daemon was started in one.
func (r *runner) daemonNetns(ctx context.Context) (string, error) {
	info, err := r.opts.Client.Server(ctx)
	if err != nil {
		return "", fmt.Errorf("ask the daemon its pid: %w", err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", info.PID))
	if err != nil || !strings.HasPrefix(filepath.Base(exe), "polyvisor") {
		return "", fmt.Errorf("the daemon's pid %d is no polyvisor process on this host (%s): bench measures the network only beside its daemon", info.PID, orError(exe, err))
	}
	return fmt.Sprintf("/proc/%d/ns/net", info.PID), nil
}

func orError(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// vethPair is the baseline: two network namespaces made for it, joined
// by a bare veth pair, with the host's probe as the sink in the second.
type vethPair struct {
	r      *runner
	made   []string // namespaces, deleted by close
	sendNS string   // the first namespace's path
	sink   *sink
}

// newVethPair makes the baseline; on failure it removes what it made.
func (r *runner) newVethPair(ctx context.Context, hostNS string) (_ *vethPair, err error) {
	pair, err := freePair(ctx, hostNS)
	if err != nil {
		return nil, err
	}
	removeStaleNetns(ctx)
	v := &vethPair{r: r}
	defer func() {
		if err != nil {
			err = errors.Join(err, v.close(ctx))
		}
	}()
	id := os.Getpid()
	nsA, nsB := fmt.Sprintf("%s%d-a", netnsPrefix, id), fmt.Sprintf("%s%d-b", netnsPrefix, id)
	ifA, ifB := fmt.Sprintf("pvb%d-a", id), fmt.Sprintf("pvb%d-b", id)
	for _, ns := range []string{nsA, nsB} {
		if _, err := command(ctx, "ip", "netns", "add", ns); err != nil {
			return nil, fmt.Errorf("make network namespace %s: %w", ns, err)
		}
		v.made = append(v.made, ns)
	}
	pathA, pathB := netnsPath(nsA), netnsPath(nsB)
	a, b := pair.Addr().Next(), pair.Addr().Next().Next()
	bits := fmt.Sprint(pair.Bits())
	for _, step := range []struct {
		ns   string
		argv []string
	}{
		{pathA, []string{"ip", "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB}},
		{pathA, []string{"ip", "addr", "add", a.String() + "/" + bits, "dev", ifA}},
		{pathB, []string{"ip", "addr", "add", b.String() + "/" + bits, "dev", ifB}},
		{pathA, []string{"ip", "link", "set", ifA, "up"}},
		{pathB, []string{"ip", "link", "set", ifB, "up"}},
	} {
		if _, err := inNetns(ctx, step.ns, step.argv...); err != nil {
			return nil, fmt.Errorf("veth pair: %w", err)
		}
	}
	v.sendNS = pathA
	if v.sink, err = r.hostSink(ctx, pathB, b); err != nil {
		return nil, err
	}
	return v, nil
}

// measure runs net.tcp over the pair.
func (v *vethPair) measure(ctx context.Context) (benchreport.Figure, error) {
	return v.r.hostSend(ctx, v.sendNS, v.sink.addr)
}

// close stops the sink and deletes the namespaces (deleting one deletes
// its veth end, and with it the other), even when ctx is cancelled.
func (v *vethPair) close(ctx context.Context) error {
	if v.sink != nil {
		v.sink.stop()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var err error
	for _, ns := range v.made {
		if _, e := command(ctx, "ip", "netns", "delete", ns); e != nil {
			err = errors.Join(err, fmt.Errorf("remove network namespace %s: %w", ns, e))
		}
	}
	return err
}

// netnsPrefix starts the names of the baseline's network namespaces,
// followed by the pid of the bench that made them.
const netnsPrefix = "pv-bench-net-"

// netnsDir is where `ip netns add` pins a namespace.
const netnsDir = "/run/netns"

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// removeStaleNetns deletes the baseline namespaces of a bench that was
// killed before it could: those whose pid no longer runs. A live pid's
// are left alone, whoever holds that pid now.
func removeStaleNetns(ctx context.Context) {
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		pid, ok := stalePID(e.Name())
		if !ok || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if _, err := command(ctx, "ip", "netns", "delete", e.Name()); err != nil {
			slog.Warn("remove a stale bench network namespace", "netns", e.Name(), "err", err)
		}
	}
}

// stalePID is the pid in the name of a baseline namespace.
func stalePID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, netnsPrefix)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, "-a")
	if !ok {
		digits, ok = strings.CutSuffix(rest, "-b")
	}
	pid, err := strconv.Atoi(digits)
	return pid, ok && err == nil && pid > 0
}

// freePair is the first /30 of vethRange that no route of bench's own
// network namespace or of the daemon's covers.
func freePair(ctx context.Context, hostNS string) (netip.Prefix, error) {
	var used []netip.Prefix
	for _, ns := range []string{"/proc/self/ns/net", hostNS} {
		out, err := inNetns(ctx, ns, "ip", "-4", "-j", "route", "show", "table", "all")
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("read the host's routes: %w", err)
		}
		routes, err := routePrefixes(out)
		if err != nil {
			return netip.Prefix{}, err
		}
		used = append(used, routes...)
	}
	return firstFree(vethRange, 30, used)
}

// routePrefixes reads the destinations of `ip -j route`'s JSON; the
// default route covers everything and is left out.
func routePrefixes(out []byte) ([]netip.Prefix, error) {
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("read ip route's JSON: %w", err)
	}
	var prefixes []netip.Prefix
	for _, rt := range routes {
		if p, err := netip.ParsePrefix(rt.Dst); err == nil {
			prefixes = append(prefixes, p.Masked())
		} else if a, err := netip.ParseAddr(rt.Dst); err == nil {
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return prefixes, nil
}

// firstFree is the first prefix of length bits inside within that
// overlaps none of used.
func firstFree(within netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, error) {
	p := netip.PrefixFrom(within.Addr(), bits)
	for within.Contains(p.Addr()) {
		if !slices.ContainsFunc(used, p.Overlaps) {
			return p, nil
		}
		next := p.Addr()
		for range 1 << (32 - bits) {
			next = next.Next()
		}
		p = netip.PrefixFrom(next, bits)
	}
	return netip.Prefix{}, fmt.Errorf("every /%d of %s is covered by a route of the host: no addresses left for the veth baseline", bits, within)
}

// guestPaths fills paths (each class's guest-to-guest, then host-to-guest
// path) on bench's isolated network, made for it and deleted after; an
// error is for every path not yet measured.
func (r *runner) guestPaths(ctx context.Context, hostNS string, paths []benchreport.NetPath, baseline func(context.Context) *benchreport.Figure) (err error) {
	check, err := r.opts.Client.HostCheck(ctx)
	if err != nil {
		return fmt.Errorf("host check: %w", err)
	}
	r.opts.Progress("network: create network " + benchNetwork)
	_, err = r.opts.Client.CreateNetwork(ctx, api.NetworkCreate{Name: benchNetwork, Isolated: true})
	if errors.Is(err, api.ErrExists) {
		return fmt.Errorf("network %s is left from an earlier bench (or one is running): delete it with polyvisor network delete %s", benchNetwork, benchNetwork)
	}
	if err != nil {
		return fmt.Errorf("create network %s: %w", benchNetwork, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if e := r.opts.Client.DeleteNetwork(ctx, benchNetwork); e != nil {
			err = errors.Join(err, fmt.Errorf("delete network %s: %w", benchNetwork, e))
		}
	}()
	for i := 0; i+1 < len(paths); i += 2 {
		if err := ctx.Err(); err != nil {
			return err
		}
		class := paths[i].Class
		spec := specOf(class)
		if works, reason := classWorks(check, spec); !works {
			paths[i].Reason, paths[i+1].Reason = reason, reason
			continue
		}
		guestErr, hostErr := r.classPaths(ctx, spec, hostNS, baseline, &paths[i], &paths[i+1])
		if guestErr != nil {
			paths[i].Error = guestErr.Error()
		}
		if hostErr != nil {
			paths[i+1].Error = hostErr.Error()
		}
	}
	return nil
}

// classWorks is the host check's verdict on the class.
func classWorks(check api.HostCheck, spec guestSpec) (bool, string) {
	for _, v := range check.Classes {
		if v.Class == spec.verdict {
			return v.Works, v.Reason
		}
	}
	return false, "the host check has no verdict on " + spec.verdict
}

// classPaths launches two guests of the class on bench's network and
// measures guest to guest and host to guest; both guests are deleted
// before it returns. An error launching them is both paths'.
func (r *runner) classPaths(ctx context.Context, spec guestSpec, hostNS string, baseline func(context.Context) *benchreport.Figure, guestPath, hostPath *benchreport.NetPath) (guestErr, hostErr error) {
	label := spec.class
	if err := r.ensureTemplate(ctx, spec); err != nil {
		return err, err
	}
	names := []string{namePrefix + spec.class + "-net-0", namePrefix + spec.class + "-net-1"}
	addrs := make([]netip.Addr, len(names))
	var launched []string
	defer func() {
		for _, n := range launched {
			if err := r.remove(ctx, n); err != nil && !errors.Is(err, api.ErrNotFound) {
				err = fmt.Errorf("delete %s: %w", n, err)
				guestErr, hostErr = errors.Join(guestErr, err), errors.Join(hostErr, err)
			}
		}
	}()
	for i, name := range names {
		r.opts.Progress(fmt.Sprintf("network: %s: launch %s", label, name))
		launched = append(launched, name)
		if err := r.launchOn(ctx, spec, name); err != nil {
			return err, err
		}
		addr, err := r.waitAddress(ctx, name)
		if err != nil {
			return err, err
		}
		addrs[i] = addr
		if err := r.copyProbeIn(ctx, spec, name); err != nil {
			return err, err
		}
	}
	r.opts.Progress("network: veth baseline beside " + label)
	base := baseline(ctx)
	guestPath.Baseline, hostPath.Baseline = base, base
	r.opts.Progress("network: " + benchreport.GuestToGuest(label))
	guestPath.Figure, guestErr = r.guestToGuest(ctx, names, addrs[0])
	r.opts.Progress("network: " + benchreport.HostToGuest(label))
	hostPath.Figure, hostErr = r.hostToGuest(ctx, hostNS, names[0], addrs[0])
	return guestErr, hostErr
}

// launchOn creates and starts a guest of the class on bench's network.
func (r *runner) launchOn(ctx context.Context, spec guestSpec, name string) error {
	op, err := r.opts.Client.CreateGuest(ctx, api.GuestCreate{
		Name: name, Template: "busybox", Type: spec.typ, Arch: spec.arch.Debian,
		CPUs: runtime.NumCPU(), Networks: []string{benchNetwork}, Start: true,
	})
	if err == nil {
		err = r.opts.Client.Wait(ctx, op, nil)
	}
	if err != nil {
		return fmt.Errorf("launch %s on %s: %w", name, benchNetwork, err)
	}
	return nil
}

// waitAddress waits for the guest's DHCP lease.
func (r *runner) waitAddress(ctx context.Context, name string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, addressTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		g, err := r.opts.Client.Guest(ctx, name)
		if err == nil && len(g.IPv4) > 0 {
			text, _, _ := strings.Cut(g.IPv4[0], "/")
			return netip.ParseAddr(text)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return netip.Addr{}, fmt.Errorf("%s got no address on %s within %s: %w", name, benchNetwork, addressTimeout, err)
		}
	}
}

// probeInGuest is where the probe is copied in a guest.
const probeInGuest = "/var/tmp/polyvisor-probe"

// sinkPIDFile holds the pid of the sink bench runs in a guest.
const sinkPIDFile = "/var/tmp/polyvisor-probe-sink.pid"

// copyProbeIn copies the probe of the guest's arch in, through exec's
// stdin.
func (r *runner) copyProbeIn(ctx context.Context, spec guestSpec, name string) error {
	bin, err := os.Open(filepath.Join(r.opts.ProbeDir, ProbeName(spec.arch.GOARCH)))
	if err != nil {
		return err
	}
	defer bin.Close()
	var stderr bytes.Buffer
	code, err := r.opts.Client.Run(ctx, name, []string{"sh", "-c", "mkdir -p /var/tmp && cat > " + probeInGuest + " && chmod 755 " + probeInGuest}, bin, &stderr, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return fmt.Errorf("copy the probe into %s: %w", name, err)
	}
	return nil
}

// guestToGuest measures net.tcp from names[1] to a sink in names[0].
func (r *runner) guestToGuest(ctx context.Context, names []string, sinkAddr netip.Addr) (benchreport.Figure, error) {
	s, err := r.guestSink(ctx, names[0], sinkAddr)
	if err != nil {
		return benchreport.Figure{}, err
	}
	defer s.stop()
	var stdout, stderr bytes.Buffer
	code, err := r.opts.Client.Run(ctx, names[1], r.senderArgs(probeInGuest, s.addr), nil, &stdout, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, lastLine(stderr.String()))
	}
	if err != nil {
		return benchreport.Figure{}, fmt.Errorf("run the probe in %s: %w", names[1], err)
	}
	return netFigure(stdout.Bytes())
}

// hostToGuest measures net.tcp from the host, in the daemon's network
// namespace, to a sink in the guest.
func (r *runner) hostToGuest(ctx context.Context, hostNS, name string, addr netip.Addr) (benchreport.Figure, error) {
	s, err := r.guestSink(ctx, name, addr)
	if err != nil {
		return benchreport.Figure{}, err
	}
	defer s.stop()
	return r.hostSend(ctx, hostNS, s.addr)
}

// senderArgs is the probe's command line that measures net.tcp to addr.
func (r *runner) senderArgs(bin, addr string) []string {
	return []string{bin, "--only", probe.NetTCP, "--size", r.opts.Size, "--peer", addr}
}

// hostSend runs the host's probe, in the network namespace at ns, sending
// to the sink at addr.
func (r *runner) hostSend(ctx context.Context, ns, addr string) (benchreport.Figure, error) {
	out, err := inNetns(ctx, ns, r.senderArgs(filepath.Join(r.opts.ProbeDir, ProbeName(arch.Host().GOARCH)), addr)...)
	if err != nil {
		return benchreport.Figure{}, fmt.Errorf("run the probe: %w", err)
	}
	return netFigure(out)
}

// netFigure is the net.tcp figure of the probe's output.
func netFigure(out []byte) (benchreport.Figure, error) {
	o, err := parseProbe(out)
	if err != nil {
		return benchreport.Figure{}, err
	}
	for _, res := range o.Results {
		if res.Name != probe.NetTCP {
			continue
		}
		if res.Error != "" {
			return benchreport.Figure{}, errors.New(res.Error)
		}
		return netRunsFigure(res.Runs), nil
	}
	return benchreport.Figure{}, fmt.Errorf("the probe's output has no %s", probe.NetTCP)
}

// netRunsFigure is the net.tcp figure of runs, in MiB/s, with its median's
// interval.
func netRunsFigure(runs []float64) benchreport.Figure {
	f := figureOf(probe.NetTCP, "MiB/s", true, runs)
	if ci, ok := benchreport.MedianInterval(runs); ok {
		f.CI = &ci
	}
	return f
}

// sink is a polyvisor-probe --serve that runs until stop.
type sink struct {
	addr   string // HOST:PORT it listens on
	halt   func() // asks it to end; nil: cancel does
	cancel context.CancelFunc
	done   chan error
}

// startSink runs serve, which runs the probe's --serve writing its stdout
// to the given writer, until stop; it returns once the sink has printed
// the address it listens on.
func startSink(ctx context.Context, serve func(ctx context.Context, stdout *firstLine) error) (*sink, error) {
	sctx, cancel := context.WithCancel(ctx)
	out := &firstLine{ready: make(chan string, 1)}
	s := &sink{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- serve(sctx, out) }()
	timer := time.NewTimer(sinkTimeout)
	defer timer.Stop()
	select {
	case s.addr = <-out.ready:
		return s, nil
	case err := <-s.done:
		cancel()
		if err == nil {
			err = errors.New("it ended before it listened")
		}
		return nil, fmt.Errorf("start the net.tcp sink: %w", err)
	case <-timer.C:
		s.stop()
		return nil, fmt.Errorf("start the net.tcp sink: no address printed within %s", sinkTimeout)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop ends the sink and waits for it.
func (s *sink) stop() {
	if s.halt != nil {
		s.halt()
	}
	s.cancel()
	<-s.done
}

// hostSink runs the host's probe as a sink on addr, in the network
// namespace at ns.
func (r *runner) hostSink(ctx context.Context, ns string, addr netip.Addr) (*sink, error) {
	bin := filepath.Join(r.opts.ProbeDir, ProbeName(arch.Host().GOARCH))
	return startSink(ctx, func(ctx context.Context, stdout *firstLine) error {
		cmd := exec.CommandContext(ctx, "nsenter", "--net="+ns, "--", bin, "--serve", net.JoinHostPort(addr.String(), "0"))
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = stdout, &stderr
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s --serve: %w: %s", bin, err, lastLine(stderr.String()))
		}
		return nil
	})
}

// guestSink runs the probe copied into the guest as a sink on addr. It is
// stopped by a kill of its pid inside the guest, so that it does not
// outlive bench's exec session.
func (r *runner) guestSink(ctx context.Context, name string, addr netip.Addr) (*sink, error) {
	script := fmt.Sprintf("echo $$ > %s && exec %s --serve %s", sinkPIDFile, probeInGuest, net.JoinHostPort(addr.String(), "0"))
	s, err := startSink(ctx, func(ctx context.Context, stdout *firstLine) error {
		var stderr bytes.Buffer
		code, err := r.opts.Client.Run(ctx, name, []string{"sh", "-c", script}, nil, stdout, &stderr)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d: %s", code, lastLine(stderr.String()))
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("polyvisor-probe --serve in %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.halt = func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		var out bytes.Buffer
		if code, err := r.opts.Client.Run(ctx, name, []string{"sh", "-c", "kill $(cat " + sinkPIDFile + ")"}, nil, &out, &out); err != nil || code != 0 {
			// The guest's deletion ends it in any case.
			slog.Debug("stop the net.tcp sink", "guest", name, "code", code, "err", err, "output", out.String())
		}
	}
	return s, nil
}

// firstLine is an io.Writer that sends the first line written to it on
// ready and discards the rest.
type firstLine struct {
	mu    sync.Mutex
	buf   []byte
	sent  bool
	ready chan string // buffered: one line
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sent {
		f.buf = append(f.buf, p...)
		if line, _, ok := bytes.Cut(f.buf, []byte("\n")); ok {
			f.sent = true
			f.ready <- strings.TrimSpace(string(line))
			f.buf = nil
		}
	}
	return len(p), nil
}

// inNetns runs argv in the network namespace at ns, entered with
// nsenter alone (ip netns exec would also remount /sys), and returns its
// stdout.
func inNetns(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	return command(ctx, "nsenter", append([]string{"--net=" + ns, "--"}, argv...)...)
}

// command runs a program and returns its stdout; its error carries the
// last line of its stderr.
func command(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), exitDetail(err))
	}
	return out, nil
}
