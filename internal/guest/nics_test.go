package guest

import (
	"slices"
	"testing"
)

// A VM lists its NICs with their MACs; they survive a save and load, are
// checked, move with the network, and older definitions (macs by network)
// still read.
func TestDefinitionListsNICs(t *testing.T) {
	d := sampleVM()
	d.Networks = []string{"a", "b"}
	d.NICs = []NIC{{Network: "a", MAC: "00:50:56:00:00:01"}, {Network: "b"}, {Network: "a", MAC: "00:50:56:00:00:03"}}
	text, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(text)
	if err != nil {
		t.Fatalf("parse %s: %v", text, err)
	}
	if !slices.Equal(back.NICs, d.NICs) {
		t.Errorf("NICs %+v after a round trip, want %+v", back.NICs, d.NICs)
	}
	c := d.Clone()
	c.NICs[0].MAC = "00:50:56:00:00:09"
	if d.NICs[0].MAC != "00:50:56:00:00:01" {
		t.Error("Clone shares the NICs")
	}

	bad := d.Clone()
	bad.NICs[1].Network = "c"
	wantInvalid(t, "a NIC on a network the guest does not join", bad.Validate(), "nics", "NIC 2", `"c"`)
	bad = d.Clone()
	bad.NICs[2].MAC = "01:00:5e:00:00:01"
	wantInvalid(t, "a multicast MAC", bad.Validate(), "nics", "NIC 3", "unicast")
	ct := sample()
	ct.Networks, ct.NICs = []string{"a"}, []NIC{{Network: "a"}}
	wantInvalid(t, "a container listing NICs", ct.Validate(), "only a vm")

	moved := d.Clone()
	if err := moved.Set("network", "c"); err != nil {
		t.Fatal(err)
	}
	if len(moved.NICs) != 3 || moved.NICs[0].Network != "c" || moved.NICs[2].MAC != "00:50:56:00:00:03" || moved.Validate() != nil {
		t.Errorf("after network=c: networks %v NICs %+v", moved.Networks, moved.NICs)
	}
	if err := moved.Set("network", "none"); err != nil || moved.NICs != nil {
		t.Errorf("after network=none: %v, NICs %+v", err, moved.NICs)
	}

	old := sampleVM()
	old.Networks, old.MACs = []string{"a"}, map[string]string{"a": "00:50:56:3f:00:01"}
	text, _ = old.Marshal()
	if back, err := Parse(text); err != nil || back.MACs["a"] != "00:50:56:3f:00:01" || back.NICs != nil {
		t.Errorf("a definition with macs: %v, %+v", err, back)
	}
}
