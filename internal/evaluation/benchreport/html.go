package benchreport

import (
	_ "embed"
	"html/template"
	"io"
	"strings"
	"sync"
)

// reportHTML is report.html: everything inline, nothing fetched, so the
// file can be mailed or opened offline.
//
//go:embed report.html.tmpl
var reportHTML string

// htmlTemplate is parsed on first use, not at every CLI start.
var htmlTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report.html").Funcs(template.FuncMap{
		"verdictClass": func(v string) string { return strings.ReplaceAll(strings.ToLower(v), " ", "-") },
	}).Parse(reportHTML))
})

// htmlPage is what the template reads: the report's static parts, and
// Data, its JSON, for the charts' script.
type htmlPage struct {
	*Report
	Created  string
	Memory   string
	Versions string
	Legend   string
	// RoundsLine and Warnings say what the figures stand on: the paired
	// rounds, why they stopped, and the host's load when it was not quiet.
	RoundsLine string
	Warnings   []string
	MinRuns    int
	Rows       []htmlRow
	Claims     []Claim
	Data       File
	// Net is the network section (NetworkHTML), empty without paths.
	Net template.HTML
}

type htmlRow struct {
	Figure string
	Cells  []htmlCell
}

type htmlCell struct {
	Class string // ok, failed, na, noise
	Text  string
}

// WriteHTML writes report.html: a self-contained page with the host, the
// claims' verdicts, the ratios table and a chart per figure, drawn by its
// inline script from the report's JSON embedded in the page.
func WriteHTML(w io.Writer, r *Report) error {
	file := NewFile(r)
	p := htmlPage{
		Report:   r,
		Created:  r.CreatedAt.UTC().Format("2006-01-02 15:04:05 MST"),
		Memory:   FormatBytes(r.Host.MemoryBytes),
		Versions: Versions(r.Host),
		Legend:   RatioLegend,
		Claims:   file.Claims,
		Data:     file,
		// Intervals on fewer runs are not drawn, as the table does not
		// show them.
		RoundsLine: RoundsLine(r),
		Warnings:   LoadWarnings(r),
		MinRuns:    MinIntervalRuns,
	}
	net, err := NetworkHTML(r)
	if err != nil {
		return err
	}
	p.Net = net
	for _, row := range file.Ratios {
		hr := htmlRow{Figure: row.Figure}
		for _, c := range row.Cells {
			class := strings.ReplaceAll(c.State, "/", "")
			if c.Noise != "" {
				class = "noise"
			}
			hr.Cells = append(hr.Cells, htmlCell{Class: class, Text: c.Text})
		}
		p.Rows = append(p.Rows, hr)
	}
	return htmlTemplate().Execute(w, p)
}
