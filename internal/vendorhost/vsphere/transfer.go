package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// idleTimeout ends a download or upload that moved no byte for this
// long: the host went away without closing the connection.
const idleTimeout = 60 * time.Second

// leaseProgressEvery is how often a transfer renews its NFC lease, which
// the host drops after its LeaseTimeout (300 s) without a report.
const leaseProgressEvery = 5 * time.Second

// waitLease polls an NFC lease until it is ready.
func (h *host) waitLease(ctx context.Context, lease *nfc.Lease) error {
	for {
		var l mo.HttpNfcLease
		if err := property.DefaultCollector(h.vc).RetrieveOne(ctx, lease.Reference(), []string{"state", "error"}, &l); err != nil {
			return err
		}
		switch l.State {
		case types.HttpNfcLeaseStateReady:
			return nil
		case types.HttpNfcLeaseStateError:
			if l.Error != nil {
				return task.Error{LocalizedMethodFault: l.Error}
			}
			return errors.New("the NFC lease failed")
		case types.HttpNfcLeaseStateDone:
			return errors.New("the NFC lease ended before the transfer")
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// abortLease gives a lease back after a failure, bounded even when ctx
// is over; the host cleans up what the transfer made.
func (h *host) abortLease(ctx context.Context, lease *nfc.Lease) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dialTimeout)
	defer cancel()
	if err := lease.Abort(actx, nil); err != nil {
		slog.Debug("vsphere: abort NFC lease", "host", h.name, "err", err)
	}
}

// transfer moves an NFC lease's files, in the caller's goroutine: it
// counts bytes for progress, renews the lease as it goes, and cancels
// itself when no byte moved for idleTimeout.
type transfer struct {
	h      *host
	lease  *nfc.Lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   *time.Timer

	phase       string
	done, total int64
	progress    func(phase string, done, total int64)
	renewed     time.Time
}

func (h *host) newTransfer(ctx context.Context, lease *nfc.Lease, phase string, total int64, progress func(string, int64, int64)) *transfer {
	t := &transfer{h: h, lease: lease, phase: phase, total: total, progress: progress, renewed: time.Now()}
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	t.idle = time.AfterFunc(idleTimeout, func() { t.cancel(errCallTimeout) })
	progress(phase, 0, total)
	return t
}

// close stops the idle timer.
func (t *transfer) close() {
	t.idle.Stop()
	t.cancel(nil)
}

// moved counts n bytes more.
func (t *transfer) moved(n int) {
	if n == 0 {
		return
	}
	t.idle.Reset(idleTimeout)
	t.done += int64(n)
	t.progress(t.phase, t.done, t.total)
	if time.Since(t.renewed) >= leaseProgressEvery {
		t.renewed = time.Now()
		percent := int32(0)
		if t.total > 0 {
			percent = int32(min(100, 100*t.done/t.total))
		}
		if err := t.lease.Progress(t.ctx, percent); err != nil {
			slog.Debug("vsphere: renew NFC lease", "host", t.h.name, "err", err)
		}
	}
}

// Write counts what a download wrote.
func (t *transfer) Write(p []byte) (int, error) {
	t.moved(len(p))
	return len(p), nil
}

// err explains a transfer's failure: a stall is errCallTimeout.
func (t *transfer) err(err error) error {
	if err != nil && errors.Is(context.Cause(t.ctx), errCallTimeout) && !errors.Is(err, errCallTimeout) {
		return fmt.Errorf("%w: no data for %s: %v", errCallTimeout, idleTimeout, err)
	}
	return err
}

// download writes one lease item to path, a new file.
func (t *transfer) download(item nfc.FileItem, path string) (int64, error) {
	rc, _, err := t.h.vc.Download(t.ctx, item.URL, &soap.Download{Method: "GET"})
	if err != nil {
		return 0, t.err(err)
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.MultiWriter(f, t), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, t.err(err)
}

// countingReader counts what an upload read.
type countingReader struct {
	r io.Reader
	t *transfer
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.moved(n)
	return n, err
}

// upload sends size bytes of r as one lease item: a disk as a stream
// VMDK (POST), another file as is (PUT).
func (t *transfer) upload(item nfc.FileItem, r io.Reader, size int64) error {
	opts := soap.Upload{Method: "POST", Type: "application/x-vnd.vmware-streamVmdk", ContentLength: size}
	if item.Create {
		opts = soap.Upload{Method: "PUT", Type: "application/octet-stream", ContentLength: size, Headers: map[string]string{"Overwrite": "t"}}
	}
	return t.err(t.h.vc.Upload(t.ctx, countingReader{r: r, t: t}, item.URL, &opts))
}
