package benchreport

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
)

// NetBaseline names the path every other network path is compared with:
// two network namespaces joined by a bare veth pair, nothing between them.
const NetBaseline = "veth (baseline)"

// NetPath is the TCP throughput of one network path, measured with the
// probe's net.tcp (one stream, the sink at one end, the sender at the
// other), and how it compares with NetBaseline measured in the same run.
type NetPath struct {
	// Name is NetBaseline, GuestToGuest(class) or HostToGuest(class).
	Name string `json:"name"`
	// Class is the guest class the path runs through; empty for the
	// baseline.
	Class string `json:"class,omitempty"`
	// Figure is the throughput in MiB/s: the median of its runs and the
	// interval of that median (MedianInterval).
	Figure Figure `json:"figure"`
	// Baseline is the veth pair's figure measured right before this
	// path's class, beside it in time; nil for the baseline itself.
	Baseline *Figure `json:"baseline,omitempty"`
	// Ratio is Figure's median over Baseline's (over the baseline path's
	// when Baseline is nil): 1 is as fast as a bare veth pair. 0 when
	// either was not measured.
	Ratio float64 `json:"ratio,omitempty"`
	// RatioCI bounds Ratio by the two medians' intervals: the path's low
	// over the baseline's high, the path's high over the baseline's low.
	RatioCI *Interval `json:"ratioCI,omitempty"`
	// Error is why measuring failed; Reason why the path was not measured
	// at all (the class does not work on this host).
	Error  string `json:"error,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// GuestToGuest names the path between two guests of class on one network.
func GuestToGuest(class string) string { return class + " ↔ " + class }

// HostToGuest names the path from the host, on the network's bridge, to a
// guest of class.
func HostToGuest(class string) string { return "host ↔ " + class }

// SetNetRatios sets every path's Ratio and RatioCI: over its own
// Baseline when it has one, else over the baseline path. Paths without a
// median, or without a baseline that has one, get no ratio.
func SetNetRatios(paths []NetPath) {
	var pooled *Figure
	for i := range paths {
		if paths[i].Name == NetBaseline && paths[i].Error == "" {
			pooled = &paths[i].Figure
		}
	}
	for i := range paths {
		p := &paths[i]
		p.Ratio, p.RatioCI = 0, nil
		base := pooled
		if p.Baseline != nil {
			base = p.Baseline
		}
		if base == nil || p.Error != "" || p.Reason != "" {
			continue
		}
		ratio, ok := XOfNative(p.Figure.Median, base.Median, true)
		if !ok {
			continue
		}
		p.Ratio = ratio
		if p.Figure.CI != nil && base.CI != nil && base.CI.Low > 0 {
			p.RatioCI = &Interval{Low: p.Figure.CI.Low / base.CI.High, High: p.Figure.CI.High / base.CI.Low, N: min(p.Figure.CI.N, base.CI.N)}
		}
	}
}

// netRow is one path as the views show it.
type netRow struct {
	Name     string
	State    string // StateOK, StateFailed, StateNA
	MiBs     string // "2345" or the failure
	Interval string // "[2300, 2400]"
	Runs     string
	Beside   string // the median of the veth baseline the ratio is over
	Ratio    string // "0.77× [0.70, 0.81]"
	// Bar is the path's share of the fastest path, in percent, for the
	// HTML's bar.
	Bar int
}

// netRows turns the report's paths into rows.
func netRows(r *Report) []netRow {
	fastest := 0.0
	for _, p := range r.Network {
		if p.Error == "" && p.Reason == "" {
			fastest = max(fastest, p.Figure.Median)
		}
	}
	var rows []netRow
	for _, p := range r.Network {
		row := netRow{Name: p.Name, State: StateOK}
		switch {
		case p.Reason != "":
			row.State, row.MiBs = StateNA, "n/a: "+oneLine(p.Reason)
		case p.Error != "" || !(p.Figure.Median > 0):
			row.State, row.MiBs = StateFailed, "failed: "+oneLine(orDefault(p.Error, "no throughput measured"))
		default:
			row.MiBs = FormatNumber(p.Figure.Median)
			row.Runs = fmt.Sprint(len(p.Figure.Runs))
			if p.Figure.CI != nil {
				row.Interval = p.Figure.CI.String()
			}
			if p.Baseline != nil && p.Baseline.Median > 0 {
				row.Beside = FormatNumber(p.Baseline.Median)
			}
			if p.Ratio > 0 {
				row.Ratio = FormatRatio(p.Ratio)
				if p.RatioCI != nil {
					row.Ratio += " " + p.RatioCI.String()
				}
			}
			if fastest > 0 {
				row.Bar = int(100 * p.Figure.Median / fastest)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// netLegend says, once for every view, what the network figures are.
const netLegend = "TCP throughput of one stream (the probe's net.tcp), MiB/s, median of its runs with the 95 % interval; " +
	"x of veth is each path over a bare veth pair between two network namespaces, measured right before each class's paths " +
	"(veth beside; the baseline's row pools every such measurement of the run)"

// WriteNetworkTable prints the report's network paths for a terminal; it
// prints nothing when the report has none.
func WriteNetworkTable(w io.Writer, r *Report) error {
	rows := netRows(r)
	if len(rows) == 0 {
		return nil
	}
	head := []string{"path", "MiB/s", "95 % interval", "runs", "veth beside", "x of veth [interval]"}
	widths := make([]int, len(head))
	for i, h := range head {
		widths[i] = len([]rune(h))
	}
	cells := func(row netRow) []string {
		if row.State != StateOK {
			return []string{row.Name, row.MiBs}
		}
		return []string{row.Name, row.MiBs, row.Interval, row.Runs, row.Beside, row.Ratio}
	}
	for _, row := range rows {
		if row.State != StateOK {
			widths[0] = max(widths[0], len([]rune(row.Name)))
			continue
		}
		for i, c := range cells(row) {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	b.WriteString("\nNetwork throughput:\n")
	line := func(fields []string) {
		var s string
		for i, f := range fields {
			if i > 0 {
				s += strings.Repeat(" ", columnGap)
			}
			if i == len(fields)-1 {
				s += f
			} else {
				s += pad(f, widths[i])
			}
		}
		b.WriteString(strings.TrimRight(s, " ") + "\n")
	}
	line(head)
	total := columnGap * (len(widths) - 1)
	for _, w := range widths {
		total += w
	}
	b.WriteString(strings.Repeat("─", total) + "\n")
	for _, row := range rows {
		line(cells(row))
	}
	b.WriteString(wrap(netLegend, tableWidth, "", ""))
	_, err := io.WriteString(w, b.String())
	return err
}

// networkHTML is the network section of report.html; its classes
// (ok, failed, na) are the ratios table's.
var networkHTML = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("network").Parse(`<section id="network">
<h2>Network throughput</h2>
<p class="legend">{{.Legend}}</p>
<table class="network">
<thead><tr><th>path</th><th>MiB/s</th><th>95 % interval</th><th>runs</th><th>veth beside, MiB/s</th><th>x of veth [interval]</th><th></th></tr></thead>
<tbody>
{{- range .Rows}}
{{- if eq .State "ok"}}
<tr class="ok"><th>{{.Name}}</th><td>{{.MiBs}}</td><td>{{.Interval}}</td><td>{{.Runs}}</td><td>{{.Beside}}</td><td>{{.Ratio}}</td><td><span class="netbar" style="display:inline-block;height:0.8em;background:#4a7;width:{{.Bar}}px"></span></td></tr>
{{- else}}
<tr class="{{if eq .State "n/a"}}na{{else}}failed{{end}}"><th>{{.Name}}</th><td colspan="6">{{.MiBs}}</td></tr>
{{- end}}
{{- end}}
</tbody>
</table>
</section>
`))
})

// NetworkHTML is the network section of report.html, for the report's
// template to place; empty when the report has no network paths.
func NetworkHTML(r *Report) (template.HTML, error) {
	rows := netRows(r)
	if len(rows) == 0 {
		return "", nil
	}
	var b bytes.Buffer
	if err := networkHTML().Execute(&b, struct {
		Legend string
		Rows   []netRow
	}{netLegend, rows}); err != nil {
		return "", fmt.Errorf("network section of report.html: %w", err)
	}
	return template.HTML(b.String()), nil
}
