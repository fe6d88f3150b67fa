package daemon

import (
	"errors"
	"testing"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/guest"
)

func TestTableReservesNamesAndPinsTemplates(t *testing.T) {
	tb := newTable()
	if err := tb.reserve("web", "busybox"); err != nil {
		t.Fatal(err)
	}
	if err := tb.reserve("web", "debian"); !errors.Is(err, api.ErrExists) {
		t.Errorf("second reservation: %v", err)
	}
	// A guest still being created already pins its template.
	if users := tb.usersOf("busybox"); len(users) != 1 || users[0] != "web" {
		t.Errorf("users of busybox while creating: %v", users)
	}
	tb.release("web", &guest.Definition{Name: "web", Template: "busybox"})
	if users := tb.usersOf("busybox"); len(users) != 1 {
		t.Errorf("users of busybox after creation: %v", users)
	}
	if _, err := tb.get("web"); err != nil {
		t.Error(err)
	}
	tb.release("db", nil) // a failed creation
	tb.remove("web")
	if users := tb.usersOf("busybox"); len(users) != 0 {
		t.Errorf("users after delete: %v", users)
	}
	if _, err := tb.get("web"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("get after remove: %v", err)
	}
}
