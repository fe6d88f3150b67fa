package network

import (
	"fmt"
	"testing"

	"github.com/polyvisor/polyvisor/internal/guest"
)

// A guest that lists its NICs has each of them, in order, with its MAC
// and a tap of its own, even when several share a network; the first on
// each network is the one NICOf names, which the network reserves for.
func TestGuestNICsGivesEveryListedNIC(t *testing.T) {
	def := &guest.Definition{Name: "many", Type: guest.TypeVM, Networks: []string{"a", "b"}}
	for i := range 10 {
		nic := guest.NIC{Network: "a", MAC: fmt.Sprintf("00:50:56:00:00:%02x", i)}
		if i == 1 {
			nic.Network = "b"
		}
		if i == 9 {
			nic.MAC = "" // derived
		}
		def.NICs = append(def.NICs, nic)
	}
	nics := GuestNICs(def)
	if len(nics) != 10 {
		t.Fatalf("%d NICs, want 10", len(nics))
	}
	taps, macs := map[string]bool{}, map[string]bool{}
	for i, nic := range nics {
		if want := def.NICs[i].MAC; want != "" && nic.MAC.String() != want {
			t.Errorf("NIC %d: MAC %s, want %s", i+1, nic.MAC, want)
		}
		if nic.Network != def.NICs[i].Network || nic.Bridge != nic.Network {
			t.Errorf("NIC %d: on %s (bridge %s), want %s", i+1, nic.Network, nic.Bridge, def.NICs[i].Network)
		}
		if taps[nic.HostIf] || macs[nic.MAC.String()] || len(nic.HostIf) > 15 {
			t.Errorf("NIC %d: tap %q or MAC %s repeated or too long", i+1, nic.HostIf, nic.MAC)
		}
		taps[nic.HostIf], macs[nic.MAC.String()] = true, true
	}
	if nics[9].MAC[0] != 0x02 {
		t.Errorf("NIC 10 has no MAC of its own: derived %s, want a locally administered one", nics[9].MAC)
	}
	if nics[0].HostIf != NICOf("many", "a").HostIf || nics[1].HostIf != NICOf("many", "b").HostIf {
		t.Errorf("the first NIC on each network is not NICOf's: %s %s", nics[0].HostIf, nics[1].HostIf)
	}
	if got := GuestNIC(def, "b"); got.MAC.String() != "00:50:56:00:00:01" {
		t.Errorf("GuestNIC(b) = %s, want the first NIC on b", got.MAC)
	}
	// A definition of before (one NIC per network, MACs by network) reads
	// as it did.
	old := &guest.Definition{Name: "old", Networks: []string{"a"}, MACs: map[string]string{"a": "00:50:56:3f:00:01"}}
	if got := GuestNICs(old); len(got) != 1 || got[0].MAC.String() != "00:50:56:3f:00:01" || got[0].HostIf != NICOf("old", "a").HostIf {
		t.Errorf("a definition with macs: %+v", got)
	}
}
