package benchreport

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// chromiumTimeout bounds one headless Chromium run; it only catches a hang.
const chromiumTimeout = 60 * time.Second

// mixedReport has every kind of cell: measured, failed (the container's
// fsync), n/a (an emulation class that does not work here) and noise (the
// container's mem.copy, 1.10× of native).
func mixedReport() *Report {
	r := fullReport()
	setFigure(r, Container, probe.MemCopy, 9900)
	ct := r.FindClass(Container)
	for i := range ct.Probe.Results {
		if ct.Probe.Results[i].Name == probe.DiskFsync {
			ct.Probe.Results[i] = probe.Result{Name: probe.DiskFsync, Unit: "µs", Error: "fsync: input/output error"}
		}
	}
	r.Classes[3] = Class{Name: Emulation, Label: "emulation", Works: false, Reason: "qemu-system-aarch64 not found"}
	return r
}

func writeHTML(t *testing.T, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var embeddedJSON = regexp.MustCompile(`(?s)<script type="application/json" id="report-data">(.*?)</script>`)

func TestWriteHTMLSelfContained(t *testing.T) {
	r := mixedReport()
	page := writeHTML(t, r)

	// Nothing is fetched: no links, sources, imports or URLs but the SVG
	// namespace the script names its elements with.
	rest := strings.ReplaceAll(page, `"http://www.w3.org/2000/svg"`, "")
	for _, bad := range []string{"<link", " src=", "href=", "@import", "url(", "http://", "https://", "//cdn"} {
		if strings.Contains(rest, bad) {
			t.Errorf("report.html holds %q: it must not fetch anything", bad)
		}
	}
	for _, want := range []string{
		`<section id="claims">`, "<h2>The chapter's claims</h2>", `<section id="charts">`, `<table class="ratios">`,
		"6.1.0-18-amd64", "polyvisor 0.1.0, qemu 7.2.0, runc 1.1.5", "polyvisor bench --classes container,vm,emulation",
		"2025-03-14 09:26:53 UTC", "tcg: the KVM canary guest failed",
		"failed: fsync: input/output error", "n/a: qemu-system-aarch64 not found", "980 Mops/s (0.98× [0.97, 0.99])",
		"18.0 ms [16.2, 21.6]", `<td class="noise">noise: 1.10× [1.09, 1.11], faster than its host</td>`,
		`<dd id="rounds">5 rounds; stopped: intervals within ±3 %`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, c := range Claims(r) {
		if !strings.Contains(page, html.EscapeString(c.Statement)) || !strings.Contains(page, html.EscapeString(c.Evidence)) {
			t.Errorf("report.html lacks claim %s", c.ID)
		}
	}

	m := embeddedJSON.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no embedded report JSON")
	}
	var f File
	if err := json.Unmarshal([]byte(m[1]), &f); err != nil {
		t.Fatalf("embedded JSON: %v", err)
	}
	if f.Report == nil || f.Host.Hostname != "lab1" || len(f.Ratios) != len(Rows(r)) || len(f.Claims) != len(Claims(r)) {
		t.Errorf("embedded JSON is not the report: %+v", f)
	}
	if strings.Contains(page, `<section id="load">`) {
		t.Error("a quiet host's report warns of its load")
	}

	// A busy host's report says so, with each warning.
	busy(r)
	page = writeHTML(t, r)
	for _, want := range []string{`<section id="load">`, "The host was not quiet while bench ran",
		"<li>after round 2, other work kept 85% of the CPUs busy (make (4242) 85%)</li>", "<li>after round 3, the hypervisor under this host took 12% of the CPUs (steal)</li>"} {
		if !strings.Contains(page, want) {
			t.Errorf("busy host's report.html lacks %q", want)
		}
	}
}

func TestWriteHTMLEscapes(t *testing.T) {
	r := fullReport()
	evil := `<script>alert("x")</script>`
	r.Host.Hostname = evil
	r.Command = "polyvisor bench </script><b>"
	r.Classes[1].Label = `<img onerror="x">`
	page := writeHTML(t, r)
	for _, bad := range []string{evil, "</script><b>", `<img onerror`} {
		if strings.Contains(page, bad) {
			t.Errorf("report.html holds %q unescaped", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("the hostname is not HTML-escaped in the header")
	}
	var f File
	m := embeddedJSON.FindStringSubmatch(page)
	if m == nil || json.Unmarshal([]byte(m[1]), &f) != nil || f.Host.Hostname != evil || f.Command != r.Command {
		t.Errorf("the embedded JSON does not carry the hostname and command intact")
	}
}

// runChromium runs headless Chromium with args, in its own process group
// so that a hang kills it and every process it started, and only those.
func runChromium(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	chromium := hostreq.Need(t, "chromium")
	ctx, cancel := context.WithTimeout(t.Context(), chromiumTimeout)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(dir, "chromium-profile"),
	}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v (context: %v)\n%s", args, err, ctx.Err(), lastLines(stderr.String(), 10))
	}
	return stdout.Bytes()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var (
	svgChart = regexp.MustCompile(`(?s)<svg\b([^>]*)>(.*?)</svg>`)
	attr     = regexp.MustCompile(`([\w-]+)="([^"]*)"`)
	element  = regexp.MustCompile(`<(rect|text|path)\b([^>]*)>`)
	pathEnds = regexp.MustCompile(`^M ([\d.]+) [\d.]+ H ([\d.]+) `)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attr.FindAllStringSubmatch(s, -1) {
		m[a[1]] = html.UnescapeString(a[2])
	}
	return m
}

// TestReportHTMLInChromium opens report.html in headless Chromium: its
// script must have drawn a bar for every measured value and a marker for
// every failed or n/a one, and the page must render.
func TestReportHTMLInChromium(t *testing.T) {
	dir := t.TempDir()
	r := mixedReport()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(writeHTML(t, r)), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := string(runChromium(t, dir, "--dump-dom", "file://"+page))

	charts := map[string]string{}
	for _, m := range svgChart.FindAllStringSubmatch(dom, -1) {
		if a := attrs(m[1]); a["class"] == "chart" {
			charts[a["data-figure"]] = m[2]
		}
	}
	rows := Rows(r)
	if len(charts) != len(rows) {
		t.Errorf("%d charts drawn, want one per figure: %d", len(charts), len(rows))
	}
	for _, row := range rows {
		body, ok := charts[row.Figure]
		if !ok {
			t.Errorf("no chart for %s", row.Figure)
			continue
		}
		var bars, markers, errorbars, wantBars, wantMarkers, wantErrorbars []string
		barEnd := map[string]float64{}
		for _, m := range element.FindAllStringSubmatch(body, -1) {
			a := attrs(m[2])
			switch {
			case m[1] == "rect" && a["class"] == "bar":
				bars = append(bars, a["data-class"])
				x, _ := strconv.ParseFloat(a["x"], 64)
				w, _ := strconv.ParseFloat(a["width"], 64)
				barEnd[a["data-class"]] = x + w
			case m[1] == "text" && strings.HasPrefix(a["class"], "marker "):
				markers = append(markers, a["data-class"]+" "+strings.TrimPrefix(a["class"], "marker "))
			case m[1] == "path" && a["class"] == "errorbar":
				errorbars = append(errorbars, a["data-class"])
				checkErrorbar(t, row, a, barEnd[a["data-class"]])
			}
		}
		for _, c := range row.Cells {
			switch {
			case c.Noise != "":
				wantMarkers = append(wantMarkers, c.Class+" noise")
			case c.State == StateOK:
				wantBars = append(wantBars, c.Class)
				if c.CI != nil && c.CI.N >= MinIntervalRuns {
					wantErrorbars = append(wantErrorbars, c.Class)
				}
			default:
				wantMarkers = append(wantMarkers, c.Class+" "+strings.ReplaceAll(c.State, "/", ""))
			}
		}
		if !slices.Equal(bars, wantBars) || !slices.Equal(markers, wantMarkers) || !slices.Equal(errorbars, wantErrorbars) {
			t.Errorf("%s: bars %v, markers %v and error bars %v, want bars %v, markers %v and error bars %v",
				row.Figure, bars, markers, errorbars, wantBars, wantMarkers, wantErrorbars)
		}
	}
	if mem := charts[probe.MemCopy]; !strings.Contains(mem, "noise: 1.10× [1.09, 1.11], faster than its host") {
		t.Errorf("the noise marker does not say so: %s", mem)
	}
	fsync := charts[probe.DiskFsync]
	if !strings.Contains(fsync, "failed: fsync: input/output error") {
		t.Errorf("the failed fsync's marker does not say why: %s", fsync)
	}

	claims := regexp.MustCompile(`(?s)<section id="claims">(.*?)</section>`).FindStringSubmatch(dom)
	if claims == nil {
		t.Fatal("no claims section in the rendered page")
	}
	for _, c := range Claims(r) {
		if !strings.Contains(claims[1], `data-claim="`+c.ID+`"`) || !strings.Contains(claims[1], c.Verdict) {
			t.Errorf("claims section lacks %s %s", c.ID, c.Verdict)
		}
	}

	shot := filepath.Join(dir, "report.png")
	runChromium(t, dir, "--screenshot="+shot, "--window-size=1280,2000", "file://"+page)
	checkScreenshot(t, shot)
}

// checkErrorbar checks that an error bar carries its cell's interval and
// is drawn around the end of the cell's bar: the median lies inside it.
func checkErrorbar(t *testing.T, row Row, a map[string]string, barEnd float64) {
	t.Helper()
	c := row.Cell(a["data-class"])
	low, _ := strconv.ParseFloat(a["data-low"], 64)
	high, _ := strconv.ParseFloat(a["data-high"], 64)
	if c.CI == nil || !near(low, c.CI.Low) || !near(high, c.CI.High) {
		t.Errorf("%s %s: error bar [%v, %v], want the cell's interval %+v", row.Figure, c.Class, low, high, c.CI)
		return
	}
	m := pathEnds.FindStringSubmatch(a["d"])
	if m == nil {
		t.Errorf("%s %s: error bar path %q", row.Figure, c.Class, a["d"])
		return
	}
	x1, _ := strconv.ParseFloat(m[1], 64)
	x2, _ := strconv.ParseFloat(m[2], 64)
	if !(x1 <= barEnd+0.2 && barEnd <= x2+0.2) {
		t.Errorf("%s %s: error bar from x=%v to %v, the bar ends at %v outside it", row.Figure, c.Class, x1, x2, barEnd)
	}
}

// checkScreenshot checks that the page rendered: the PNG decodes, is not a
// single color, and shows the container's bars in their color.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot does not decode: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != 1280 || b.Dy() != 2000 {
		t.Errorf("screenshot is %dx%d, want 1280x2000", b.Dx(), b.Dy())
	}
	colors := map[[3]uint32]bool{}
	green := 0 // the container's bars: #1a7f37
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if within(r>>8, 0x1a) && within(g>>8, 0x7f) && within(bl>>8, 0x37) {
				green++
			}
		}
	}
	if len(colors) < 3 {
		t.Errorf("screenshot has %d colors: the page did not render", len(colors))
	}
	if green < 500 {
		t.Errorf("screenshot has %d sampled pixels of the container's bar color, want the bars drawn", green)
	}
}

func within(v, want uint32) bool { return v+6 >= want && v <= want+6 }
