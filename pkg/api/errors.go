package api

import "errors"

// Sentinel errors shared by the daemon, the client and the CLI. Wrap them
// with %w; the daemon maps them to HTTP statuses in one place (Status) and the
// client maps statuses back (FromStatus), so errors.Is works on both sides.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrNotRunning   = errors.New("not running")
	ErrInvalid      = errors.New("invalid")
	ErrConflict     = errors.New("conflict")
	ErrNotAvailable = errors.New("not available on this host")
	// ErrBusy: the resource is held by a long operation (an export, a
	// snapshot, a copy); the request is refused at once instead of
	// waiting minutes for it.
	ErrBusy = errors.New("busy")
	// ErrUnauthenticated: a request over the network without a client
	// certificate; ErrForbidden: with one this daemon does not trust.
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
)

// HTTP statuses the sentinels map to, net/http's values: pkg/api does not
// import net/http, whose package initialisation and cgo resolver would
// otherwise weigh on every polyvisor-monitor (through internal/runc's use of
// the sentinels). TestErrorsMapToStatusAndBack checks them against net/http.
const (
	statusBadRequest     = 400
	statusUnauthorized   = 401
	statusForbidden      = 403
	statusNotFound       = 404
	statusConflict       = 409
	statusInternalError  = 500
	statusNotImplemented = 501
)

// Status maps an error to the HTTP status the API answers with.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return statusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrConflict), errors.Is(err, ErrNotRunning), errors.Is(err, ErrBusy):
		return statusConflict
	case errors.Is(err, ErrInvalid):
		return statusBadRequest
	case errors.Is(err, ErrNotAvailable):
		return statusNotImplemented
	case errors.Is(err, ErrUnauthenticated):
		return statusUnauthorized
	case errors.Is(err, ErrForbidden):
		return statusForbidden
	}
	return statusInternalError
}

// Kind names the sentinel an error wraps, carried in API error bodies so the
// client can restore it.
func Kind(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.kind
		}
	}
	return ""
}

// Sentinel returns the sentinel error named by kind, or nil.
func Sentinel(kind string) error {
	for _, s := range sentinels {
		if s.kind == kind {
			return s.err
		}
	}
	return nil
}

var sentinels = []struct {
	kind string
	err  error
}{
	{"not-found", ErrNotFound},
	{"exists", ErrExists},
	{"not-running", ErrNotRunning},
	{"invalid", ErrInvalid},
	{"conflict", ErrConflict},
	{"not-available", ErrNotAvailable},
	{"busy", ErrBusy},
	{"unauthenticated", ErrUnauthenticated},
	{"forbidden", ErrForbidden},
}
