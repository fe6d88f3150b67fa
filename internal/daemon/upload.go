package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// An import from a browser: the file comes as the request's body, is kept
// under STATE/uploads while it is imported, and goes when the import ends
// (a daemon that died meanwhile sweeps it at its next start).

const (
	uploadPath = api.Version + "/imports/upload"
	// maxUpload bounds an upload, whatever the free space.
	maxUpload = 1 << 40
	// uploadIdle is how long an upload may send nothing before it is cut.
	uploadIdle = time.Minute
)

// uploadName keeps what of a file's name is safe in a path.
var uploadName = lazyre.New(`[^A-Za-z0-9._+-]`)

// handleImportUpload receives a file and imports it: the import's options
// come as JSON in the query (options=, api.Import without a path), the
// file's name in filename=, its bytes as the body.
func (d *Daemon) handleImportUpload(w http.ResponseWriter, r *http.Request) {
	op, err := d.receiveUpload(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, op)
}

func (d *Daemon) receiveUpload(w http.ResponseWriter, r *http.Request) (api.Operation, error) {
	q := r.URL.Query()
	var req api.Import
	if opts := q.Get("options"); opts != "" {
		dec := json.NewDecoder(strings.NewReader(opts))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return api.Operation{}, fmt.Errorf("%w: options: %v", api.ErrInvalid, err)
		}
	}
	if req.Path != "" {
		return api.Operation{}, fmt.Errorf("%w: options: path: an upload's file is its body; leave path out", api.ErrInvalid)
	}
	if err := d.checkImport(&req); err != nil {
		return api.Operation{}, err
	}
	name := strings.TrimLeft(uploadName().ReplaceAllString(filepath.Base(q.Get("filename")), "_"), ".")
	if name == "" || name == "_" {
		return api.Operation{}, fmt.Errorf("%w: filename: give the uploaded file's name (filename=disk.qcow2)", api.ErrInvalid)
	}
	if err := d.checkUploadSize(r.ContentLength); err != nil {
		return api.Operation{}, err
	}
	if err := os.MkdirAll(d.layout.UploadsDir(), 0o700); err != nil {
		return api.Operation{}, fmt.Errorf("upload: %w", err)
	}
	dir, err := os.MkdirTemp(d.layout.UploadsDir(), "upload-")
	if err != nil {
		return api.Operation{}, fmt.Errorf("upload: %w", err)
	}
	remove := func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, name)
	if err := receiveFile(w, r, path); err != nil {
		remove()
		return api.Operation{}, err
	}
	req.Path = path
	d.log.Info("received a file to import", "file", name, "bytes", r.ContentLength, "by", clientName(r))
	return d.startImport(req, remove), nil
}

// checkUploadSize refuses an upload of no stated length, or one the state
// dir could not hold twice (the import writes about as much again).
func (d *Daemon) checkUploadSize(size int64) error {
	if size < 0 {
		return fmt.Errorf("%w: the upload states no length: send Content-Length", api.ErrInvalid)
	}
	if size > maxUpload {
		return fmt.Errorf("%w: the file is %d bytes, more than the %d an upload takes: import it with 'polyvisor import' on the server", api.ErrInvalid, size, int64(maxUpload))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d.layout.StateDir, &st); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if free := int64(st.Bavail) * st.Bsize; 2*size > free {
		return fmt.Errorf("%w: the file is %d bytes and the state dir has %d free; an import needs about twice the file's size", api.ErrInvalid, size, free)
	}
	return nil
}

// receiveFile writes the request's body to path. The server's read
// deadline would cut an upload of some gigabytes: it is lifted, and a
// deadline of uploadIdle set before each read instead, so a stalled
// client holds the connection that long only.
func receiveFile(w http.ResponseWriter, r *http.Request, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	rc := http.NewResponseController(w)
	body := readerFunc(func(p []byte) (int, error) {
		rc.SetReadDeadline(time.Now().Add(uploadIdle))
		return r.Body.Read(p)
	})
	n, err := io.Copy(f, body)
	if err != nil {
		return bodyError(err)
	}
	if n != r.ContentLength {
		return fmt.Errorf("%w: the upload ended after %d of its %d bytes", api.ErrInvalid, n, r.ContentLength)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	return f.Close()
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// sweepUploads removes what uploads an earlier daemon left: their imports
// died with it.
func (d *Daemon) sweepUploads() error {
	if err := os.RemoveAll(d.layout.UploadsDir()); err != nil {
		return fmt.Errorf("sweep uploads: %w", err)
	}
	return nil
}

// handleBenchReport serves the host's last bench report (report.json or
// report.html, as the route names): bench writes them under STATE/bench.
// The HTML is self-contained (inline scripts and styles), so it is served
// under a policy that lets it run nothing else, and be framed by the web
// console alone.
func (d *Daemon) handleBenchReport(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name != "report.html" && name != "report.json" {
		writeError(w, fmt.Errorf("%w: %s: a bench report is report.html or report.json", api.ErrNotFound, name))
		return
	}
	last := benchreport.Last(d.layout.BenchDir())
	if last == "" {
		writeError(w, fmt.Errorf("%w: no bench report on this host yet: run 'polyvisor bench' on the server", api.ErrNotFound))
		return
	}
	file := filepath.Join(filepath.Dir(last), name)
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if name == "report.html" {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'")
	} else {
		h.Set("Content-Type", "application/json")
	}
	http.ServeFile(w, r, file)
}
