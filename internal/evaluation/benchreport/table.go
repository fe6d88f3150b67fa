package benchreport

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Table layout, in terminal columns.
const (
	tableWidth = 118 // four classes and native fit a 120-column terminal
	maxColumn  = 30  // a class's column when few classes leave room
	// minColumn holds "6453 Mflops/s (1.00×)": with more classes (peers)
	// the table grows wider rather than cut the figures.
	minColumn = 21
	columnGap = 2
)

// RatioLegend says, once for every view, how ratios read.
const RatioLegend = `ratios are "x of native": 1.00× is as good as the host itself, below 1 worse, above 1 better ` +
	`(class/native where higher is better, native/class where lower is better: ns, µs, ms)`

// WriteTable prints the report for a terminal: the host, then one row per
// figure with a column per class, then each claim's verdict (Claims).
func WriteTable(w io.Writer, r *Report) error {
	var b strings.Builder
	writeHeader(&b, r)
	writeLoadWarning(&b, r)
	rows := Rows(r)
	for i, cols := range columnGroups(r) {
		if i == 1 {
			b.WriteString("\nThe peers, measured the same way in the same rounds:\n")
		}
		b.WriteString("\n")
		writeRows(&b, r, rows, cols)
	}
	b.WriteString("\n")
	b.WriteString(wrap(RatioLegend, tableWidth, "", ""))
	for _, c := range r.Classes {
		if !c.Works {
			b.WriteString(wrap(fmt.Sprintf("%s does not work here: %s", c.Name, orDefault(c.Reason, "no reason recorded")), tableWidth, "", "  "))
		}
	}
	if err := WriteNetworkTable(&b, r); err != nil {
		return err
	}
	b.WriteString("\nThe chapter's claims, checked here:\n")
	indent := strings.Repeat(" ", 16)
	for _, c := range Claims(r) {
		b.WriteString(wrap(c.Statement, tableWidth, pad("  "+c.Verdict, len(indent)), indent))
		b.WriteString(wrap(c.Evidence, tableWidth, indent, indent))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeHeader(b *strings.Builder, r *Report) {
	h := r.Host
	fmt.Fprintf(b, "polyvisor bench on %s, %s, size %s\n", orDefault(h.Hostname, "an unnamed host"), r.CreatedAt.UTC().Format("2006-01-02 15:04 MST"), orDefault(r.Size, "unknown"))
	fmt.Fprintf(b, "host:     %s, %s, %d CPUs, %s memory\n", orDefault(h.Arch, "arch unknown"), orDefault(h.CPUModel, "CPU unknown"), h.CPUs, FormatBytes(h.MemoryBytes))
	fmt.Fprintf(b, "kernel:   %s\n", orDefault(h.Kernel, "unknown"))
	accel := orDefault(h.Accel, "unknown")
	if h.AccelReason != "" {
		accel += ": " + oneLine(h.AccelReason)
	}
	b.WriteString(wrap(accel, tableWidth, "accel:    ", "          "))
	fmt.Fprintf(b, "versions: %s\n", Versions(h))
	if r.Command != "" {
		fmt.Fprintf(b, "command:  %s\n", r.Command)
	}
	b.WriteString(wrap(RoundsLine(r), tableWidth, "rounds:   ", "          "))
}

// RoundsLine says how many paired rounds the figures stand on and why
// they stopped: "5 rounds; stopped: intervals within ±3 %".
func RoundsLine(r *Report) string {
	switch {
	case r.Rounds == 0 && r.Version < 2:
		return fmt.Sprintf("none: a report from before paired rounds (schema version %d), so no ratio has an interval", r.Version)
	case r.Rounds == 0:
		return "none ran, so no ratio has an interval"
	}
	s := fmt.Sprintf("%d rounds", r.Rounds)
	if r.Rounds == 1 {
		s = "1 round"
	}
	if r.StopReason != "" {
		s += "; stopped: " + oneLine(r.StopReason)
	}
	return s + "; intervals are 95 % (bootstrap over the paired rounds)"
}

// LoadWarnings are what the report says of a host that was not quiet
// while bench ran; none for a quiet one.
func LoadWarnings(r *Report) []string {
	switch {
	case r.Load == nil && r.Rounds == 0:
		return nil // a version 1 report: nothing was recorded, RoundsLine says so
	case r.Load == nil:
		return []string{"the host's load was not recorded: whether other work ran beside bench is unknown"}
	case r.Load.Quiet:
		return nil
	case len(r.Load.Warnings) == 0:
		return []string{"the host was busy with other work while bench ran"}
	}
	return r.Load.Warnings
}

func writeLoadWarning(b *strings.Builder, r *Report) {
	warnings := LoadWarnings(r)
	if len(warnings) == 0 {
		return
	}
	b.WriteString("\nWARNING: the host was not quiet while bench ran: ratios may carry other work's load, and verdicts\n")
	b.WriteString("that the widened intervals do not decide are INCONCLUSIVE.\n")
	for _, w := range warnings {
		b.WriteString(wrap(w, tableWidth, "  - ", "    "))
	}
}

// Versions lists the host's software versions, sorted: "qemu 7.2.0, runc 1.1.5".
func Versions(h Host) string {
	if len(h.Versions) == 0 {
		return "unknown"
	}
	var parts []string
	for _, name := range sortedKeys(h.Versions) {
		parts = append(parts, name+" "+h.Versions[name])
	}
	return strings.Join(parts, ", ")
}

// peersPerTable is how many peers one table shows beside native, so that
// a run with every peer stays readable on a terminal.
const peersPerTable = 4

// columnGroups are the report's classes as the table shows them: native
// and polyvisor's classes, then native and up to peersPerTable peers at a
// time.
func columnGroups(r *Report) [][]int {
	var own, peers []int
	for i := range r.Classes {
		if r.Classes[i].Peer() {
			peers = append(peers, i)
		} else {
			own = append(own, i)
		}
	}
	groups := [][]int{own}
	native := slices.IndexFunc(r.Classes, func(c Class) bool { return c.Name == Native })
	for len(peers) > 0 {
		n := min(peersPerTable, len(peers))
		group := peers[:n]
		if native >= 0 {
			group = append([]int{native}, group...)
		}
		groups = append(groups, group)
		peers = peers[n:]
	}
	return groups
}

// writeRows writes the rows' cells of the classes at cols.
func writeRows(b *strings.Builder, r *Report, rows []Row, cols []int) {
	first := len("figure")
	for _, row := range rows {
		first = max(first, utf8.RuneCountInString(row.Figure))
	}
	n := max(len(cols), 1)
	col := min(maxColumn, max(minColumn, (tableWidth-first)/n-columnGap))

	// Labels are wrapped onto as many header lines as the longest needs.
	labels := make([][]string, len(cols))
	lines := 1
	for i, k := range cols {
		c := r.Classes[k]
		labels[i] = wrapWords(orDefault(c.Label, c.Name), col)
		lines = max(lines, len(labels[i]))
	}
	for l := 0; l < lines; l++ {
		head := ""
		if l == lines-1 {
			head = "figure"
		}
		cells := make([]string, len(cols))
		for i := range cols {
			if l < len(labels[i]) {
				cells[i] = labels[i][l]
			}
		}
		writeLine(b, head, first, cells, col)
	}
	b.WriteString(strings.Repeat("─", first+len(cols)*(col+columnGap)) + "\n")
	// A cell's interval goes on a second line under its value, so that
	// the columns keep the width of a value.
	for _, row := range rows {
		heads, intervals := make([]string, len(cols)), make([]string, len(cols))
		anyInterval := false
		for i, k := range cols {
			heads[i], intervals[i] = cellParts(row, row.Cells[k])
			anyInterval = anyInterval || intervals[i] != ""
		}
		writeLine(b, row.Figure, first, heads, col)
		if anyInterval {
			writeLine(b, "", first, intervals, col)
		}
	}
}

func writeLine(b *strings.Builder, head string, first int, cells []string, col int) {
	line := pad(head, first)
	for _, c := range cells {
		line += strings.Repeat(" ", columnGap) + pad(truncate(c, col), col)
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
}

func pad(s string, width int) string {
	return s + strings.Repeat(" ", max(0, width-utf8.RuneCountInString(s)))
}

// truncate shortens s to width runes, ending it with … when cut.
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	runes := []rune(s)
	return strings.TrimRight(string(runes[:width-1]), " ") + "…"
}

// wrapWords breaks s into lines of at most width runes, at spaces; a word
// longer than width is cut.
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		word = truncate(word, width)
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}

// wrap breaks s into lines of at most width runes, the first prefixed by
// first and the others by rest, each ended by a newline.
func wrap(s string, width int, first, rest string) string {
	inner := width - max(utf8.RuneCountInString(first), utf8.RuneCountInString(rest))
	lines := wrapWords(s, max(inner, 20))
	var b strings.Builder
	for i, l := range lines {
		prefix := rest
		if i == 0 {
			prefix = first
		}
		b.WriteString(strings.TrimRight(prefix+l, " ") + "\n")
	}
	return b.String()
}
