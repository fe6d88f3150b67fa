// Package webui holds the web console's built files (web/, built by make
// build into dist/, which is not committed) and serves them at /ui/.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// Prefix is where the console is served.
const Prefix = "/ui/"

// Handler serves the console's files: index.html for any path that names
// no file (the page routes by its URL's fragment), with headers that keep
// the page from being framed, sniffed or leaking its URL.
func Handler() http.Handler {
	files, _ := fs.Sub(dist, "dist") // "dist" is embedded: cannot fail
	server := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if !Built() {
			http.Error(w, "the web console was not built into this binary: run make build (it needs node and npm)", http.StatusServiceUnavailable)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), strings.TrimSuffix(Prefix, "/"))
		name = strings.TrimPrefix(name, "/")
		if name == "" || name == "index.html" || !exists(files, name) {
			serveIndex(w, r, files)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		server.ServeHTTP(w, r2)
	})
}

// Built reports whether make build put the console's files here.
func Built() bool {
	return exists(dist, "dist/index.html")
}

func exists(files fs.FS, name string) bool {
	st, err := fs.Stat(files, name)
	return err == nil && !st.IsDir() && !strings.HasPrefix(path.Base(name), ".")
}

func serveIndex(w http.ResponseWriter, r *http.Request, files fs.FS) {
	data, err := fs.ReadFile(files, "index.html")
	if err != nil {
		http.Error(w, "index.html: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(data)
}
