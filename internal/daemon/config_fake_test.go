package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// setConfig sends config set and decodes its result.
func (h *harness) setConfig(name string, set map[string]string) (api.ConfigResult, response) {
	h.t.Helper()
	r := h.do(http.MethodPatch, "/guests/"+name+"/config", api.ConfigChange{Set: set})
	var res api.ConfigResult
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &res); err != nil {
			h.t.Fatal(err)
		}
	}
	return res, r
}

// Limits apply live to a running guest whose driver can, and at next start
// to a stopped one; a security key always waits for the next start and is
// listed as pending meanwhile.
func TestConfigSetLiveAndNextStart(t *testing.T) {
	h := newHarness(t)
	h.create("web", false)
	res, r := h.setConfig("web", map[string]string{"cpus": "2"})
	if r.status != http.StatusOK || res.Applied["cpus"] != "next-start" {
		t.Fatalf("set cpus on a stopped guest: %s %+v", r, res)
	}
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "start"})
	res, r = h.setConfig("web", map[string]string{"memory": "300MiB", "security.nesting": "true"})
	if r.status != http.StatusOK || res.Applied["memory"] != "live" || res.Applied["security.nesting"] != "next-start" {
		t.Fatalf("set on a running guest: %s %+v", r, res)
	}
	if cpus, mem := h.fake.Limits("web"); cpus != 2 || mem != 300<<20 {
		t.Errorf("driver got cpus %d memory %d, want 2 and 300MiB", cpus, mem)
	}
	def := h.definition("web")
	if def.CPUs != 2 || def.Memory != 300<<20 || !def.Security.Nesting {
		t.Errorf("saved definition: cpus %d memory %s nesting %v", def.CPUs, def.Memory, def.Security.Nesting)
	}
	if g, _ := h.guest("web"); len(g.Pending) != 1 || g.Pending[0] != "security.nesting" {
		t.Errorf("pending %v, want security.nesting", g.Pending)
	}
	// The disk grows live; a smaller one is refused and nothing is saved.
	res, r = h.setConfig("web", map[string]string{"disk": "20GiB"})
	if r.status != http.StatusOK || res.Applied["disk"] != "live" {
		t.Errorf("grow the disk: %s %+v", r, res)
	}
	if _, r = h.setConfig("web", map[string]string{"disk": "1GiB"}); r.status == http.StatusOK {
		t.Errorf("shrinking the disk was accepted: %s", r)
	}
	if disk, _ := h.definition("web").Disk("root"); disk.Size != 20<<30 {
		t.Errorf("root disk %s after a refused shrink, want 20GiB", disk.Size)
	}
}

// Bad keys and values are refused whole, naming the key; nothing is saved,
// and a live update the driver refuses leaves the definition as it was.
func TestConfigSetRefusesBadInputAndKeepsTheDefinition(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	before := h.definition("web")
	for _, set := range []map[string]string{
		{"colour": "blue"},
		{"cpus": "0"},
		{"cpus": "2", "memory": "lots"},
		{},
	} {
		_, r := h.setConfig("web", set)
		if r.status != http.StatusBadRequest {
			t.Errorf("set %v: %s, want 400", set, r)
		}
	}
	if _, r := h.setConfig("web", map[string]string{"colour": "blue"}); !strings.Contains(r.err().Error, "colour") {
		t.Errorf("the refusal does not name the key: %s", r)
	}
	h.fake.SetFail("UpdateLimits", errInjected)
	if _, r := h.setConfig("web", map[string]string{"cpus": "3"}); r.status != http.StatusInternalServerError || !strings.Contains(r.err().Error, errInjected.Error()) {
		t.Errorf("a failed live update: %s", r)
	}
	after := h.definition("web")
	if after.CPUs != before.CPUs || after.Memory != before.Memory {
		t.Errorf("refused changes were saved: cpus %d memory %s, was %d %s", after.CPUs, after.Memory, before.CPUs, before.Memory)
	}
	if _, r := h.setConfig("nope", map[string]string{"cpus": "2"}); r.status != http.StatusNotFound {
		t.Errorf("set on a missing guest: %s", r)
	}
}
