package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// handleTemplateArchive serves GET /1.0/templates/{name}/archive: the
// template's directory as template.Store.Archive writes it, with its digest
// (api.DigestHeader) and length in the headers.
//
// The digest must reach the receiver before the body, so the archive is
// made twice: a first pass counts and digests it and is thrown away, the
// second is sent. Nothing is written to the sender's disk (a temp file as
// large as the template, to clean up after a crash or a client that
// leaves), at the cost of reading and compressing the template twice. Both
// passes give the same bytes, since a template is read-only and Archive is
// deterministic; should the template change between them, the stream sent
// no longer matches the digest and the receiver refuses it.
func (d *Daemon) handleTemplateArchive(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var size countWriter
	digest, err := d.templates.Archive(r.Context(), name, &size)
	if err != nil {
		writeError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/zstd")
	h.Set("Content-Length", strconv.FormatInt(int64(size), 10))
	h.Set(api.DigestHeader, digest)
	w.WriteHeader(http.StatusOK)
	sent, err := d.templates.Archive(r.Context(), name, w)
	if err == nil && sent != digest {
		err = fmt.Errorf("the stream sent has digest %s, not %s: the template changed meanwhile", sent, digest)
	}
	if err != nil {
		// Too late for an error answer: the body stops short of its
		// Content-Length, and the receiver's digest check refuses it.
		d.log.Warn("send template archive", "template", name, "err", err)
	}
}

// countWriter counts the bytes written to it and keeps none.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// fetchTemplate makes template name here from the one the daemon behind
// from has: its archive streamed into the template store, which keeps it
// only when it arrived whole and is what the sender announced. A template
// already here with the sender's content digest is kept and is no error
// (another fetch of it may have just ended); one here with another digest
// is a conflict. Fetches of one template wait for each other, so that only
// one unpacks it.
func (d *Daemon) fetchTemplate(ctx context.Context, from *client.Client, name string) error {
	unlock, err := d.templateFetches.lock(ctx, name)
	if err != nil {
		return fmt.Errorf("fetch template %s: %w", name, err)
	}
	defer unlock()
	if local, err := d.templates.Load(name); err == nil {
		remote, err := from.Template(ctx, name)
		if err != nil {
			return fmt.Errorf("fetch template %s: %w", name, err)
		}
		if remote.Digest != local.Digest {
			return fmt.Errorf("fetch template %s: %w: this host has a template of that name with digest %s, the source's has %s; delete this host's first", name, api.ErrConflict, local.Digest, remote.Digest)
		}
		return nil
	}
	start := time.Now()
	body, digest, err := from.TemplateArchive(ctx, name)
	if err != nil {
		return fmt.Errorf("fetch template %s: %w", name, err)
	}
	defer body.Close()
	counted := &countingReader{r: body}
	if err := d.templates.Receive(ctx, name, counted, digest); err != nil {
		return fmt.Errorf("fetch template %s: %w", name, err)
	}
	d.log.Info("template fetched", "template", name, "digest", digest, "bytes", counted.n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// nameLocks holds a lock per name, taken and waited for with a context.
// The zero value is ready.
type nameLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when released
}

// lock takes name's lock, waiting while another holds it or until ctx
// ends, and returns its release.
func (l *nameLocks) lock(ctx context.Context, name string) (func(), error) {
	for {
		l.mu.Lock()
		busy, ok := l.held[name]
		if !ok {
			if l.held == nil {
				l.held = map[string]chan struct{}{}
			}
			mine := make(chan struct{})
			l.held[name] = mine
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, name)
				l.mu.Unlock()
				close(mine)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
