package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestPrintEventLines(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	cases := []struct {
		e    api.Event
		want string // the line after its time
	}{
		{api.Event{Type: api.EventLifecycle, Time: at, Action: api.GuestStarted, Guest: "web"}, "lifecycle guest-started web"},
		{api.Event{Type: api.EventOperation, Time: at, Action: api.OpRunning, Operation: &api.Operation{
			Kind: "import", Resource: "disk.vmdk", Status: api.OpRunning, Progress: api.Progress{Phase: "converting", Done: 42, Total: 100}}},
			"operation import disk.vmdk running converting 42%"},
		{api.Event{Type: api.EventOperation, Time: at, Action: api.OpFailure, Operation: &api.Operation{
			Kind: "launch", Resource: "web", Status: api.OpFailure, Error: "template gone"}},
			"operation launch web failure error: template gone"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		if err := printEvent(&b, "text", c.e); err != nil {
			t.Fatal(err)
		}
		when, rest, _ := strings.Cut(strings.TrimSuffix(b.String(), "\n"), " ")
		if parsed, err := time.Parse(time.RFC3339Nano, when); err != nil || !parsed.Equal(at) {
			t.Errorf("time %q of %+v", when, c.e)
		}
		if rest != c.want {
			t.Errorf("line %q, want %q", rest, c.want)
		}
	}
	var b bytes.Buffer
	e := api.Event{Type: api.EventLifecycle, Time: at, Action: api.GuestDeleted, Guest: "web"}
	if err := printEvent(&b, "json", e); err != nil {
		t.Fatal(err)
	}
	var back api.Event
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Guest != "web" || back.Action != api.GuestDeleted || strings.Count(b.String(), "\n") != 1 {
		t.Errorf("json line %q: %v", b.String(), err)
	}
}
