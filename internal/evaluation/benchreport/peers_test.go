package benchreport

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// withPeers is fullReport with a measured raw runc, which beats every
// class on every figure, and a podman that is not installed.
func withPeers() *Report {
	r := fullReport()
	boot := Figure{Name: Boot, Unit: "ms", Median: 5, Min: 4, Max: 6, Runs: []float64{4, 5, 6}}
	r.Classes = append(r.Classes,
		Class{Name: PeerPrefix + "runc", Label: "raw runc run (peer)", Arch: "x86_64", Works: true,
			Probe: probeOutput("x86_64", nativeFigures), Lifecycle: []Figure{boot}},
		Class{Name: PeerPrefix + "podman", Label: "podman (peer)", Reason: "not installed (podman not found)"},
	)
	return r
}

func TestPeersNeitherAdvisedNorClaimed(t *testing.T) {
	r := withPeers()
	for _, priority := range []string{PriorityCPU, PriorityDisk, PriorityBoot, PriorityDensity, PriorityIsolation} {
		a := advise(t, r, Needs{GuestOS: OSLinux, Priority: priority})
		if strings.HasPrefix(a.Class, PeerPrefix) {
			t.Errorf("priority %s: advised %s", priority, a.Class)
		}
		for _, line := range append(a.Tradeoffs, a.Reasons...) {
			if strings.Contains(line, PeerPrefix) {
				t.Errorf("priority %s: a peer in the advice: %q", priority, line)
			}
		}
		for name := range a.Refused {
			if strings.HasPrefix(name, PeerPrefix) {
				t.Errorf("priority %s: refused %s, which is no candidate", priority, name)
			}
		}
	}
	if got, want := Claims(r), Claims(fullReport()); !reflect.DeepEqual(got, want) {
		t.Errorf("peers changed the claims:\n%+v\nwant\n%+v", got, want)
	}
}

func TestPeersShown(t *testing.T) {
	r := withPeers()
	var table, html bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{table.String(), html.String()} {
		for _, want := range []string{"raw runc run", "podman (peer)"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in\n%s", want, out)
			}
		}
	}
	boot, ok := FindRow(Rows(r), LifecycleFigure(Boot))
	if !ok {
		t.Fatal("no boot row")
	}
	if c := boot.Cell(PeerPrefix + "runc"); c.State != StateOK || c.Median != 5 {
		t.Errorf("peer-runc boot cell %+v", c)
	}
	if c, _ := FindRow(Rows(r), LifecycleFigure(Stop)); c.Cell(PeerPrefix+"runc").State == StateOK {
		t.Errorf("peer-runc has a stop figure it never measured")
	}
}
