package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// addTreeTemplate adds container template name to h's store, with a small
// tree and its content digest, as a build leaves one.
func addTreeTemplate(t *testing.T, h *harness, name string) *api.Template {
	t.Helper()
	tmpl := &api.Template{ID: name, Name: name, Type: guest.TypeContainer, Source: "busybox", Arch: arch.Host().Debian}
	err := h.d.templates.Add(tmpl, func(staging string) error {
		root := filepath.Join(staging, "rootfs")
		if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), []byte(strings.Repeat("busybox ", 4096)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", filepath.Join(root, "bin", "sh")); err != nil {
			return err
		}
		var err error
		tmpl.Digest, err = template.Digest(context.Background(), root)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// The archive route answers the stream with its digest and length first,
// and a second daemon fetches the template through the client into its own
// store: the same template, and the one fetch's log line.
func TestFetchTemplateFromAnotherDaemon(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	want := addTreeTemplate(t, a, "tree")
	from := a.serveUnix(readTimeout)

	body, digest, err := from.TemplateArchive(context.Background(), "tree")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("the route announced digest %s for a stream whose digest is %x", digest, sum)
	}

	var log lockedLog
	b.d.log = slog.New(slog.NewTextHandler(&log, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Two fetches at once: one unpacks, the other finds it there.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = b.d.fetchTemplate(ctx, from, "tree") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := b.d.templates.Load("tree")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.Digest {
		t.Fatalf("fetched template has digest %s, the source's %s", got.Digest, want.Digest)
	}
	if target, err := os.Readlink(filepath.Join(b.d.templates.Rootfs("tree"), "bin", "sh")); err != nil || target != "/bin/busybox" {
		t.Fatalf("fetched /bin/sh -> %q, %v", target, err)
	}
	if n := strings.Count(log.String(), "template fetched"); n != 1 {
		t.Fatalf("%d fetches logged, want 1:\n%s", n, log.String())
	}
	if r := b.do(http.MethodGet, "/templates/tree", nil); r.status != http.StatusOK {
		t.Fatalf("the fetched template over b's API: %s", r)
	}

	// Fetching again finds it here; one of another content is a conflict.
	if err := b.d.fetchTemplate(ctx, from, "tree"); err != nil {
		t.Fatalf("fetching a template already here: %v", err)
	}
	addTreeTemplate(t, a, "other")
	tmpl := &api.Template{ID: "other", Name: "other", Type: guest.TypeContainer, Digest: "sha256:" + strings.Repeat("1", 64)}
	if err := b.d.templates.Add(tmpl, func(staging string) error { return os.Mkdir(filepath.Join(staging, "rootfs"), 0o755) }); err != nil {
		t.Fatal(err)
	}
	if err := b.d.fetchTemplate(ctx, from, "other"); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("fetching over a different template of that name: %v", err)
	}

	// A template the source lacks is not found, and leaves nothing.
	if err := b.d.fetchTemplate(ctx, from, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("fetching a template the source lacks: %v", err)
	}
	if _, err := b.d.templates.Load("nope"); err == nil {
		t.Fatal("a template the source lacks appeared")
	}
}

// The route's headers: the digest, the length, the stream's type; and
// one byte changed on its way makes the receiver keep nothing.
func TestTemplateArchiveRouteAndATamperedStream(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	addTreeTemplate(t, a, "tree")
	rec := httptest.NewRecorder()
	a.d.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, api.Version+"/templates/tree/archive", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("archive route: %d %s", rec.Code, rec.Body)
	}
	digest := rec.Header().Get(api.DigestHeader)
	sum := sha256.Sum256(rec.Body.Bytes())
	if digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("header %s: %q, the body's digest %x", api.DigestHeader, digest, sum)
	}
	if n, _ := strconv.Atoi(rec.Header().Get("Content-Length")); n != rec.Body.Len() {
		t.Fatalf("Content-Length %q for %d bytes", rec.Header().Get("Content-Length"), rec.Body.Len())
	}
	data := rec.Body.Bytes()
	data[len(data)/2] ^= 1
	err := b.d.templates.Receive(context.Background(), "tree", strings.NewReader(string(data)), digest)
	if err == nil || !strings.Contains(err.Error(), "differs from the sender's "+digest) {
		t.Fatalf("a tampered stream: %v", err)
	}
	if entries, _ := os.ReadDir(b.d.templates.Dir); len(entries) != 1 { // the harness's own template
		t.Fatalf("the receiver's store holds %d entries after a refused fetch", len(entries))
	}
	if r := a.do(http.MethodGet, "/templates/nope/archive", nil); r.status != http.StatusNotFound {
		t.Fatalf("archive of a missing template: %s", r)
	}
}
