package benchreport

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Guest operating systems a user can ask for.
const (
	OSLinux   = "linux"
	OSWindows = "windows"
	OSOther   = "other"
)

// Priorities a user can ask for.
const (
	PriorityDensity   = "density"
	PriorityDisk      = "disk"
	PriorityCPU       = "cpu"
	PriorityIsolation = "isolation"
	PriorityBoot      = "boot"
)

// Needs is what the user's guests need, as `polyvisor advise --needs` takes
// it.
type Needs struct {
	GuestOS  string `json:"guestOS"`  // OSLinux (the default), OSWindows, OSOther
	Arch     string `json:"arch"`     // uname -m (aarch64) or Debian (arm64) style; "" is the host's
	Priority string `json:"priority"` // PriorityCPU (the default), PriorityDensity, ...
	Count    int    `json:"count"`    // how many such guests; 0 is one
}

// Advice is which class fits the needs, and why, from measured figures.
type Advice struct {
	Needs     Needs    `json:"needs"`
	Class     string   `json:"class"`
	Reasons   []string `json:"reasons"`
	Tradeoffs []string `json:"tradeoffs"` // one per alternative class
	// Refused holds each class that cannot serve the needs, and why.
	Refused map[string]string `json:"refused"`
}

// isolationOrder ranks classes by how far a guest is kept from the host:
// a separate kernel behind a virtual machine first, a shared kernel last.
var isolationOrder = []string{VM, Bochs, Emulation, UML, Container, Chroot}

// isolationRank is a class's place in isolationOrder; an emulated
// architecture's class ranks as Emulation.
func isolationRank(name string) int {
	if IsEmulation(name) {
		name = Emulation
	}
	if i := slices.Index(isolationOrder, name); i >= 0 {
		return i
	}
	return len(isolationOrder)
}

// Advise picks the class of guest that fits n best on the host that
// produced r, from r's figures. When no class can serve n, the error wraps
// api.ErrNotAvailable and the Advice still says why each was refused.
func Advise(r *Report, n Needs) (Advice, error) {
	n, err := normalize(n)
	if err != nil {
		return Advice{}, err
	}
	a := Advice{Needs: n, Refused: map[string]string{}}
	rows := Rows(r)
	want, foreign := guestArch(r, n.Arch)
	var candidates []*Class
	for i := range r.Classes {
		c := &r.Classes[i]
		if c.Name == Native || c.Peer() {
			continue
		}
		if why := refusal(r, c, n, want, foreign); why != "" {
			a.Refused[c.Name] = why
			continue
		}
		candidates = append(candidates, c)
	}
	if len(candidates) == 0 {
		return a, fmt.Errorf("%w: no class of guest fits %s: %s", api.ErrNotAvailable, describe(n, want), refusedList(a.Refused))
	}
	best, why := pick(r, rows, candidates, n.Priority)
	a.Class = best.Name
	a.Reasons = append(a.Reasons, why...)
	a.Reasons = append(a.Reasons, facts(r, rows, best, n)...)
	for _, c := range candidates {
		if c != best {
			a.Tradeoffs = append(a.Tradeoffs, c.Name+": "+strings.Join(summary(r, rows, c), ", "))
		}
	}
	return a, nil
}

func normalize(n Needs) (Needs, error) {
	n.GuestOS = strings.ToLower(orDefault(n.GuestOS, OSLinux))
	n.Priority = strings.ToLower(orDefault(n.Priority, PriorityCPU))
	if !slices.Contains([]string{OSLinux, OSWindows, OSOther}, n.GuestOS) {
		return n, fmt.Errorf("%w: guest os %q: use linux, windows or other", api.ErrInvalid, n.GuestOS)
	}
	if !slices.Contains([]string{PriorityDensity, PriorityDisk, PriorityCPU, PriorityIsolation, PriorityBoot}, n.Priority) {
		return n, fmt.Errorf("%w: priority %q: use density, disk, cpu, isolation or boot", api.ErrInvalid, n.Priority)
	}
	if n.Count < 0 {
		return n, fmt.Errorf("%w: count %d: use a positive number", api.ErrInvalid, n.Count)
	}
	n.Count = max(n.Count, 1)
	return n, nil
}

// debianOnly maps Debian architecture names that package arch does not
// know to the kernel's.
var debianOnly = map[string]string{
	"i386": "i686", "armhf": "armv7l", "armel": "armv5tel", "ppc64el": "ppc64le", "mips64el": "mips64",
}

// guestArch is the guest's architecture as uname -m names it, and whether
// it is foreign to the host that produced the report.
func guestArch(r *Report, want string) (string, bool) {
	host := orDefault(r.Host.Arch, arch.Host().QEMU)
	if want == "" {
		return host, false
	}
	if a, err := arch.Parse(want); err == nil {
		want = a.QEMU
	} else if k, ok := debianOnly[want]; ok {
		want = k
	}
	return want, want != host
}

// refusal says why class c cannot serve n, or "".
func refusal(r *Report, c *Class, n Needs, want string, foreign bool) string {
	switch {
	case !c.Works:
		return "does not work on this host: " + orDefault(oneLine(c.Reason), "no reason recorded")
	case (c.Name == Container || c.Name == Chroot) && n.GuestOS != OSLinux:
		return fmt.Sprintf("a %s shares the host's Linux kernel, so it runs Linux guests only, never %s", c.Name, n.GuestOS)
	case c.Name == UML && n.GuestOS != OSLinux:
		return fmt.Sprintf("User-Mode Linux is a Linux kernel run as a host process: it runs Linux guests only, never %s", n.GuestOS)
	case (c.Name == Container || c.Name == Chroot || c.Name == UML) && foreign:
		return fmt.Sprintf("a %s runs on the host's CPU (%s) only; %s needs emulation", c.Name, r.Host.Arch, want)
	case (c.Name == VM || c.Name == Bochs) && foreign:
		return fmt.Sprintf("a %s runs guests of the host's architecture (%s); %s needs emulation", c.Name, r.Host.Arch, want)
	case IsEmulation(c.Name) && !foreign:
		return fmt.Sprintf("emulation is for foreign architectures; guests of the host's own (%s) run as a vm or a container at far better speed", want)
	case c.Name != Emulation && IsEmulation(c.Name) && c.Arch != "" && c.Arch != want:
		return fmt.Sprintf("this class emulates %s, not %s", c.Arch, want)
	}
	if pg := perGuest(c); pg > 0 {
		fit, ok := Fit(r.Host, pg)
		if ok && int64(n.Count) > fit {
			return fmt.Sprintf("%d guests at %s each need %s; %s of host memory (%s kept for the host) holds %d",
				n.Count, FormatBytes(pg), FormatBytes(pg*int64(n.Count)), FormatBytes(r.Host.MemoryBytes), FormatBytes(HostReserveBytes), fit)
		}
	}
	return ""
}

func perGuest(c *Class) int64 {
	if c.Density == nil || c.Density.Error != "" {
		return 0
	}
	return c.Density.PerGuestBytes
}

// measure is a class's figure for a priority, as advice weighs it.
type measure struct {
	ok bool
	// score is the figure made so that higher is better; b its 95 %
	// interval in the same direction (b.why says why there is none).
	score float64
	b     bound
	text  string   // as reasons quote it: "cpu 0.98× [0.97, 0.99] of native (...)"
	notes []string // cells left out as noise
}

// measureOf is the class's measured figure for a priority; not ok when it
// was not measured. Workloads flagged as noise are left out, and said so.
func measureOf(r *Report, rows []Row, c *Class, priority string) measure {
	switch priority {
	case PriorityCPU, PriorityDisk:
		prefix := cpuPrefix
		if priority == PriorityDisk {
			prefix = diskPrefix
		}
		rs, why := ratiosOf(r, rows, prefix, c.Name)
		if why != "" {
			return measure{}
		}
		var m measure
		var clean ratios
		for _, x := range rs {
			if x.noise != "" {
				m.notes = append(m.notes, fmt.Sprintf("%s %s left out: %s", c.Name, x.figure, x.noise))
				continue
			}
			x.margin = 0 // advice shows and compares the intervals as measured
			clean = append(clean, x)
		}
		if len(clean) == 0 {
			return m
		}
		m.ok, m.score, m.b = true, clean.geomean(), clean.bound()
		m.text = fmt.Sprintf("%s %s%s of native (%s)", priority, FormatRatio(m.score), m.b.suffix(), clean)
		return m
	case PriorityBoot:
		row, _ := FindRow(rows, LifecycleFigure(Boot))
		cell := row.Cell(c.Name)
		if cell.State != StateOK || !(cell.Median > 0) {
			return measure{}
		}
		m := measure{ok: true, score: 1 / cell.Median, text: "boot " + CellText(row, cell)}
		if b := medianBound(c.Name, row, cell, 0); b.why != "" {
			m.b = b
		} else {
			m.b = bound{low: 1 / b.high, high: 1 / b.low}
		}
		return m
	case PriorityDensity:
		pg := perGuest(c)
		if pg <= 0 {
			return measure{}
		}
		fit, _ := Fit(r.Host, pg)
		// One launch, no interval: the value stands as measured.
		return measure{ok: true, score: 1 / float64(pg), b: pointBound(1/float64(pg), 0),
			text: fmt.Sprintf("%s of host memory per idle guest, %s fit in %s", FormatBytes(pg), FormatCount(fit), FormatBytes(r.Host.MemoryBytes))}
	}
	return measure{}
}

// pick chooses among the candidates by the priority's figure, and says
// why: the figure with its interval and, when the intervals do not tell
// the best from the next, that too.
func pick(r *Report, rows []Row, candidates []*Class, priority string) (*Class, []string) {
	if priority == PriorityIsolation {
		best := slices.MinFunc(candidates, func(a, b *Class) int { return isolationRank(a.Name) - isolationRank(b.Name) })
		return best, []string{isolationReason(best)}
	}
	var best, next *Class
	var bm, nm measure
	for _, c := range candidates {
		m := measureOf(r, rows, c, priority)
		switch {
		case !m.ok:
		case best == nil || m.score > bm.score:
			best, bm, next, nm = c, m, best, bm
		case next == nil || m.score > nm.score:
			next, nm = c, m
		}
	}
	if best == nil {
		return candidates[0], []string{fmt.Sprintf("no class that fits has a measured %s figure; %s is the first of them in the report", priority, candidates[0].Name)}
	}
	if len(candidates) == 1 {
		return best, append([]string{"the only class that fits: " + bm.text}, bm.notes...)
	}
	reasons := append([]string{fmt.Sprintf("best measured %s among the classes that fit: %s", priority, bm.text)}, bm.notes...)
	if next != nil {
		switch {
		case bm.b.why != "":
			reasons = append(reasons, fmt.Sprintf("not decided by the intervals (%s): %s is ahead of %s on its median only", bm.b.why, best.Name, next.Name))
		case nm.b.why != "":
			reasons = append(reasons, fmt.Sprintf("not decided by the intervals (%s): %s is ahead of %s on its median only", nm.b.why, best.Name, next.Name))
		case bm.b.low <= nm.b.high:
			reasons = append(reasons, fmt.Sprintf("inconclusive: %s and %s cannot be told apart on %s, their intervals overlap (%s: %s; %s: %s); %s is ahead on its median only",
				best.Name, next.Name, priority, best.Name, bm.text, next.Name, nm.text, best.Name))
		}
	}
	return best, reasons
}

func isolationReason(c *Class) string {
	switch c.Name {
	case Container:
		return "container: the best isolated class that fits, though it shares the host's kernel (namespaces and cgroups, not a separate kernel)"
	case Chroot:
		return "chroot: the only class that fits, and the least isolated: a chroot as a non-root user, sharing the host's kernel, pids, network, hostname and IPC"
	case UML:
		return "uml: a separate guest kernel, run as host processes (User-Mode Linux): a bug in it reaches the host as its user's, not the host kernel's"
	}
	return c.Name + ": a separate guest kernel behind a virtual machine, not the host's kernel shared as a container would"
}

// summary is a class's main measured figures, each "not measured" when it
// was not.
func summary(r *Report, rows []Row, c *Class) []string {
	var out []string
	for _, p := range []string{PriorityCPU, PriorityDisk, PriorityBoot, PriorityDensity} {
		if m := measureOf(r, rows, c, p); m.ok {
			out = append(out, m.text)
		} else {
			out = append(out, p+" not measured")
		}
	}
	return out
}

// facts are the chosen class's other figures and caveats.
func facts(r *Report, rows []Row, c *Class, n Needs) []string {
	var out []string
	for _, p := range []string{PriorityCPU, PriorityDisk, PriorityBoot, PriorityDensity} {
		if m := measureOf(r, rows, c, p); m.ok && p != n.Priority {
			out = append(out, m.text)
			out = append(out, m.notes...)
		}
	}
	if pg := perGuest(c); pg > 0 && n.Count > 1 {
		fit, _ := Fit(r.Host, pg)
		out = append(out, fmt.Sprintf("%d guests need %s of host memory; up to %d fit", n.Count, FormatBytes(pg*int64(n.Count)), fit))
	} else if n.Count > 1 {
		out = append(out, fmt.Sprintf("density was not measured: whether %d guests fit is unknown", n.Count))
	}
	if c.Name == VM && isTCG(vmAccel(r)) {
		tcg := "VMs run under TCG on this host, so this vm runs at emulation speed"
		if r.Host.AccelReason != "" {
			tcg += " (" + oneLine(r.Host.AccelReason) + ")"
		}
		out = append(out, tcg)
	}
	if IsEmulation(c.Name) && c.Arch != "" && n.Arch != "" {
		if want, _ := guestArch(r, n.Arch); want != c.Arch {
			out = append(out, fmt.Sprintf("emulation was measured with a %s guest; %s runs under the same TCG, so its figures are indicative", c.Arch, want))
		}
	}
	if note := loadNote(r); note != "" && r.Load != nil {
		out = append(out, "measured on a busy host: "+note)
	}
	return out
}

func describe(n Needs, want string) string {
	return fmt.Sprintf("%d %s %s guest(s)", n.Count, n.GuestOS, want)
}

func refusedList(refused map[string]string) string {
	if len(refused) == 0 {
		return "the report has no guest classes"
	}
	var parts []string
	for _, name := range sortedKeys(refused) {
		parts = append(parts, name+": "+refused[name])
	}
	return strings.Join(parts, "; ")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// WriteAdvice prints the advice for a terminal.
func WriteAdvice(w io.Writer, a Advice) error {
	var b strings.Builder
	if a.Class != "" {
		fmt.Fprintf(&b, "Recommended: %s\n", a.Class)
	} else {
		b.WriteString("Recommended: none: no class of guest fits\n")
	}
	fmt.Fprintf(&b, "  for %s guests (arch %s, priority %s, count %d)\n", orDefault(a.Needs.GuestOS, OSLinux),
		orDefault(a.Needs.Arch, "the host's"), orDefault(a.Needs.Priority, PriorityCPU), max(a.Needs.Count, 1))
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		b.WriteString(title + "\n")
		for _, l := range lines {
			b.WriteString(wrap(l, 100, "  - ", "    "))
		}
	}
	section("Why:", a.Reasons)
	section("Trade-offs:", a.Tradeoffs)
	var refused []string
	for _, name := range sortedKeys(a.Refused) {
		refused = append(refused, name+": "+a.Refused[name])
	}
	section("Refused:", refused)
	_, err := io.WriteString(w, b.String())
	return err
}
