package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestErrorsMapToStatusAndBack(t *testing.T) {
	cases := map[error]int{
		ErrNotFound: http.StatusNotFound, ErrExists: http.StatusConflict, ErrNotRunning: http.StatusConflict,
		ErrInvalid: http.StatusBadRequest, ErrConflict: http.StatusConflict, ErrNotAvailable: http.StatusNotImplemented,
		ErrBusy:                    http.StatusConflict,
		ErrUnauthenticated:         http.StatusUnauthorized,
		ErrForbidden:               http.StatusForbidden,
		errors.New("disk on fire"): http.StatusInternalServerError,
	}
	for sentinel, status := range cases {
		wrapped := fmt.Errorf("guest web: %w", sentinel)
		if got := Status(wrapped); got != status {
			t.Errorf("Status(%v) = %d, want %d", wrapped, got, status)
		}
		kind := Kind(wrapped)
		if status == http.StatusInternalServerError {
			if kind != "" {
				t.Errorf("an unknown error got kind %q", kind)
			}
			continue
		}
		if back := Sentinel(kind); back != sentinel { //nolint:errorlint // the very sentinel, not one wrapping it
			t.Errorf("Sentinel(Kind(%v)) = %v", wrapped, back)
		}
	}
}
