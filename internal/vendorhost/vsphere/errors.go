package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// kindError is an error line that wraps a vendorhost sentinel without
// printing it, for lines that say the same in their own words.
type kindError struct {
	kind error
	err  error
}

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }

// kindf returns a kindError of kind with a formatted line.
func kindf(kind error, format string, args ...any) error {
	return kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// isFault says whether err carries the vSphere fault of target's type.
func isFault(err error, target types.BaseMethodFault) bool {
	return err != nil && fault.Is(err, target)
}

// notImplemented says whether the host lacks a method (vcsim lacks
// ExportVm and CreateDescriptor; old hosts lack newer calls).
func notImplemented(err error) bool {
	return isFault(err, &types.MethodNotFound{}) || isFault(err, &types.NotImplemented{}) || isFault(err, &types.NotSupported{})
}

// unreachable says whether err means the host could not be reached or
// went away: a refused or reset connection, a dial or call deadline, a
// reply cut short. A certificate refusal is not one of them.
func unreachable(err error) bool {
	var ce *certError
	if errors.As(err, &ce) {
		return false
	}
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, errCallTimeout)
}

// errCallTimeout marks a call the host did not answer in callTimeout.
var errCallTimeout = errors.New("the host did not answer in time")

// wrap turns an error of a call to the host into one line that wraps
// the vendorhost sentinel it means; what names the object and action
// ("guest web: power on"). A caller's cancellation stays itself.
func (h *host) wrap(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	prefix := "vsphere " + h.name
	if what != "" {
		prefix += ": " + what
	}
	var ce *certError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", prefix, ctx.Err())
	case errors.As(err, &ce):
		return h.certFailure(ce)
	case isFault(err, &types.NotAuthenticated{}), isFault(err, &types.InvalidLogin{}):
		return kindf(vendorhost.ErrAuth, "vsphere %s: user %s: login refused: check the password", h.name, h.user)
	case isFault(err, &types.NoPermission{}):
		return kindf(vendorhost.ErrAuth, "%s: user %s lacks the permission: grant it a role with it in the vSphere client", prefix, h.user)
	case unreachable(err):
		return kindf(vendorhost.ErrUnreachable, "%s: the host is unreachable or went away (%v): check that it is up and reachable, then retry", prefix, err)
	case isFault(err, &types.InvalidPowerState{}), isFault(err, &types.InvalidState{}), isFault(err, &types.TaskInProgress{}):
		return fmt.Errorf("%s: %w: %v", prefix, vendorhost.ErrConflict, err)
	case isFault(err, &types.ManagedObjectNotFound{}):
		return fmt.Errorf("%s: %w: it was removed meanwhile", prefix, vendorhost.ErrNotFound)
	case notImplemented(err):
		return fmt.Errorf("%s: %w: %v", prefix, vendorhost.ErrNotSupported, err)
	case isFault(err, &types.InvalidArgument{}), isFault(err, &types.InvalidName{}), isFault(err, &types.DuplicateName{}):
		return fmt.Errorf("%s: %w: %v", prefix, vendorhost.ErrInvalid, err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// certFailure is the line for a certificate polyvisor does not trust:
// it ends with the flag that trusts it, fingerprint included.
func (h *host) certFailure(ce *certError) error {
	if ce.pinned {
		return kindf(vendorhost.ErrAuth, "vsphere %s: its certificate is not the one it was added with: if it was replaced, check the new one and re-add the host with --insecure-fingerprint %s",
			h.name, ce.fingerprint)
	}
	return kindf(vendorhost.ErrAuth, "vsphere %s: %v: if it is the host's own, re-add the host with --insecure-fingerprint %s (its SHA-256 fingerprint)",
		h.name, ce, ce.fingerprint)
}

// callTimeout bounds each call to the host: long operations are tasks
// polled by short calls, never one call that waits.
const callTimeout = 90 * time.Second

// sessionRT bounds every call with callTimeout, and logs in again once
// when the host answers NotAuthenticated (an idle session expired, or
// vCenter restarted), then repeats the call.
type sessionRT struct {
	soap    *soap.Client
	timeout time.Duration
	user    *url.Userinfo
	sm      types.ManagedObjectReference // the SessionManager

	mu sync.Mutex // serialises logins
}

func (rt *sessionRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	err := rt.call(ctx, req, res)
	if rt.user == nil || !(isFault(err, &types.NotAuthenticated{}) || err == nil && missingSession(res)) {
		return err
	}
	if lerr := rt.login(ctx); lerr != nil {
		return err
	}
	// The reply body holds the first call's fault: clear it for the retry.
	if v := reflect.ValueOf(res); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().Set(reflect.Zero(v.Elem().Type()))
	}
	return rt.call(ctx, req, res)
}

// missingSession says whether a property retrieval came back with the
// session's end as a missing property's fault, as vcsim reports it.
func missingSession(res soap.HasFault) bool {
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return false
	}
	for _, o := range body.Res.Returnval.Objects {
		for _, m := range o.MissingSet {
			if _, ok := m.Fault.Fault.(*types.NotAuthenticated); ok {
				return true
			}
		}
	}
	return false
}

func (rt *sessionRT) call(ctx context.Context, req, res soap.HasFault) error {
	cctx, cancel := context.WithTimeoutCause(ctx, rt.timeout, errCallTimeout)
	defer cancel()
	err := rt.soap.RoundTrip(cctx, req, res)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		return fmt.Errorf("%w: %v", errCallTimeout, err)
	}
	return err
}

// login opens a session for rt.user.
func (rt *sessionRT) login(ctx context.Context) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	pass, _ := rt.user.Password()
	req := types.Login{This: rt.sm, UserName: rt.user.Username(), Password: pass}
	cctx, cancel := context.WithTimeoutCause(ctx, rt.timeout, errCallTimeout)
	defer cancel()
	_, err := methods.Login(cctx, rt.soap, &req)
	return err
}
