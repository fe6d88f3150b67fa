package daemon

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// A member's listing is joined into the cluster's without decoding it:
// every object gets its member, whatever its strings hold.
func TestSpliceMemberNamesEachGuestsMember(t *testing.T) {
	tricky := `[{"name":"a","error":"} { \"quoted\" ]","ipv4":["10.0.0.1"],"disks":[{"name":"root"}]} , {}, {"name":"b"}]`
	var out bytes.Buffer
	out.WriteByte('[')
	all := func(string) bool { return true }
	spliceMember(&out, []byte(tricky), "m1", all)
	spliceMember(&out, []byte(`[]`), "m2", all)
	spliceMember(&out, []byte(` [ {"name":"c"} ] `), "m3", all)
	// A stale copy (its guest runs on another member now) is left out.
	spliceMember(&out, []byte(`[{"name":"stale"},{"name":"d"},{"type":"vm","name":"stale"}]`), "m4", func(name string) bool { return name != "stale" })
	out.WriteByte(']')
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%s: %v", out.String(), err)
	}
	want := []struct{ name, member string }{{"a", "m1"}, {"", "m1"}, {"b", "m1"}, {"c", "m3"}, {"d", "m4"}}
	if len(got) != len(want) {
		t.Fatalf("%d objects, want %d: %s", len(got), len(want), out.String())
	}
	for i, w := range want {
		name, _ := got[i]["name"].(string)
		if name != w.name || got[i]["member"] != w.member {
			t.Errorf("object %d: %v, want name %q member %q", i, got[i], w.name, w.member)
		}
	}
	if got[0]["error"] != `} { "quoted" ]` {
		t.Errorf("a string with braces and quotes changed: %q", got[0]["error"])
	}
}

func TestWritesAreWhatAPartitionRefuses(t *testing.T) {
	for _, c := range []struct {
		method, path string
		write        bool
	}{
		{"GET", "/1.0/guests", false},
		{"POST", "/1.0/guests", true},
		{"PUT", "/1.0/guests/web/state", true},
		{"DELETE", "/1.0/guests/web", true},
		{"POST", "/1.0/guests/web/exec", false},
		{"POST", "/1.0/templates", true},
		{"POST", "/1.0/networks", true},
		{"POST", "/1.0/cluster/tokens", true},
		{"DELETE", "/1.0/cluster/members/b", true},
		{"POST", "/1.0/trust/tokens", false},
		{"GET", "/1.0/cluster", false},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if got := isWrite(r); got != c.write {
			t.Errorf("%s %s: write %v, want %v", c.method, c.path, got, c.write)
		}
	}
}

func TestThreeOrFiveMembersVote(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 3, 4: 3, 5: 5, 9: 5} {
		if got := votersFor(n); got != want {
			t.Errorf("%d members: %d voters, want %d", n, got, want)
		}
	}
}
