package daemon

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// upload sends a file's bytes to the upload route as a browser does.
func (h *harness) upload(query string, body io.Reader, length int64) response {
	h.t.Helper()
	req := httptest.NewRequest(http.MethodPost, uploadPath+"?"+query, body)
	req.ContentLength = length
	rec := httptest.NewRecorder()
	h.d.routes().ServeHTTP(rec, req)
	return response{status: rec.Code, body: rec.Body.Bytes()}
}

// An upload whose options, name or size are wrong is refused in one line
// before its body is read, and leaves nothing under STATE/uploads.
func TestUploadsAreCheckedBeforeTheyAreReceived(t *testing.T) {
	h := newHarness(t)
	h.create("taken", false)
	opts := func(json string) string { return "filename=disk.qcow2&options=" + url.QueryEscape(json) }
	for _, c := range []struct {
		query  string
		length int64
		want   string
	}{
		{opts(`{"as":"vm"}`), 4, "use guest or template"},
		{opts(`{"path":"/etc/shadow"}`), 4, "leave path out"},
		{opts(`{"bogus":1}`), 4, "options:"},
		{opts(`{"as":"template","start":true}`), 4, "describe a guest"},
		{opts(`{"name":"taken"}`), 4, "guest taken: already exists"},
		{"options=%7B%7D", 4, "filename: give the uploaded file's name"},
		{"filename=..&options=%7B%7D", 4, "filename: give the uploaded file's name"},
		{opts(`{}`), -1, "send Content-Length"},
		{opts(`{}`), 1 << 41, "more than the"},
		{opts(`{}`), 1 << 39, "an import needs about twice the file's size"},
	} {
		r := h.upload(c.query, strings.NewReader("data"), c.length)
		if r.status != http.StatusBadRequest && r.status != http.StatusConflict || !strings.Contains(string(r.body), c.want) {
			t.Errorf("upload %s (%d bytes): %s, want a refusal saying %q", c.query, c.length, r, c.want)
		}
	}
	// A body that ends before its stated length is refused, and its part goes.
	if r := h.upload(opts(`{}`), strings.NewReader("only this"), 100); r.status != http.StatusBadRequest {
		t.Errorf("a short upload: %s, want 400", r)
	}
	entries, _ := os.ReadDir(h.d.layout.UploadsDir())
	if len(entries) != 0 {
		t.Fatalf("refused uploads left %d entries in %s", len(entries), h.d.layout.UploadsDir())
	}
}

// The last bench report is served, its HTML under a policy that lets it
// run its own inline script and be framed by the console alone; no
// other file of its directory is.
func TestTheLastBenchReportIsServed(t *testing.T) {
	h := newHarness(t)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.d.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if rec := get("/1.0/bench/report.html"); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "run 'polyvisor bench'") {
		t.Fatalf("no report yet: %d %s", rec.Code, rec.Body)
	}
	for _, run := range []string{"20261201-000000", "20261205-120000"} {
		dir := filepath.Join(h.d.layout.BenchDir(), run)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, text := range map[string]string{"report.json": `{"run":"` + run + `"}`, "report.html": "<p>" + run + "</p>", "secret.txt": "no"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec := get("/1.0/bench/report.html")
	if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte("20261205-120000")) {
		t.Fatalf("the last report: %d %s", rec.Code, rec.Body)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'self'") {
		t.Fatalf("the report's policy: %q", csp)
	}
	if rec := get("/1.0/bench/report.json"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "20261205-120000") {
		t.Fatalf("the last report's JSON: %d %s", rec.Code, rec.Body)
	}
	for _, name := range []string{"secret.txt", "..", "report.txt"} {
		// (.. is cleaned away by the mux, which redirects it elsewhere.)
		if rec := get("/1.0/bench/" + name); rec.Code == http.StatusOK {
			t.Errorf("/1.0/bench/%s: %d %s, want it refused", name, rec.Code, rec.Body)
		}
	}
}
