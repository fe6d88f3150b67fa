package vmdef

import (
	"fmt"
	"strings"
	"testing"
)

// nicCount is how many NICs the multi-NIC definitions below have: more
// than a PC has slots for in some products, so that none is capped.
const nicCount = 10

// macOf is the MAC each definition gives NIC i (from 0).
func macOf(i int) string { return fmt.Sprintf("52:54:00:00:10:%02x", i) }

// wantNICs checks that m has nicCount NICs with their MACs in order.
func wantNICs(t *testing.T, m *Machine) {
	t.Helper()
	if len(m.NICs) != nicCount {
		t.Fatalf("%d NICs, want %d: %+v", len(m.NICs), nicCount, m.NICs)
	}
	for i, nic := range m.NICs {
		if nic.MAC != macOf(i) {
			t.Errorf("NIC %d: MAC %q, want %q (in order)", i+1, nic.MAC, macOf(i))
		}
	}
}

// Every NIC of a definition is read, with its MAC, in the order the
// guest sees them (issue 18): a VM with 10 NICs keeps 10.
func TestParsersKeepEveryNICInOrder(t *testing.T) {
	var vmx, vbox, xl, libvirt strings.Builder
	vmx.WriteString("config.version = \"8\"\ndisplayName = \"many\"\n")
	xl.WriteString("name = \"many\"\nbuilder = \"hvm\"\nvif = [ ")
	libvirt.WriteString("<domain type='kvm'><name>many</name><devices>\n")
	vbox.WriteString(`<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux"><Machine uuid="{00000000-0000-0000-0000-000000000001}" name="many" OSType="Debian_64"><Hardware><Network>` + "\n")
	// Written out of order where the format orders by index or slot.
	for _, i := range []int{9, 0, 1, 2, 3, 4, 5, 6, 7, 8} {
		fmt.Fprintf(&vmx, "ethernet%d.present = \"TRUE\"\nethernet%d.addressType = \"static\"\nethernet%d.address = %q\nethernet%d.networkName = \"net%d\"\n", i, i, i, macOf(i), i, i)
		fmt.Fprintf(&vbox, `<Adapter slot="%d" enabled="true" MACAddress="%s" type="82540EM"><NAT/></Adapter>`+"\n", i, strings.ReplaceAll(macOf(i), ":", ""))
	}
	for i := range nicCount {
		fmt.Fprintf(&xl, "'mac=%s,bridge=xenbr%d', ", macOf(i), i)
		fmt.Fprintf(&libvirt, "<interface type='bridge'><mac address='%s'/><source bridge='br%d'/><model type='virtio'/></interface>\n", macOf(i), i)
	}
	xl.WriteString("]\n")
	libvirt.WriteString("</devices></domain>")
	vbox.WriteString("</Network></Hardware></Machine></VirtualBox>")
	for name, parse := range map[string]func() (*Machine, error){
		"vmx":     func() (*Machine, error) { return ParseVMX([]byte(vmx.String())) },
		"vbox":    func() (*Machine, error) { return ParseVBox([]byte(vbox.String())) },
		"xl":      func() (*Machine, error) { return ParseXL([]byte(xl.String())) },
		"libvirt": func() (*Machine, error) { return ParseLibvirt([]byte(libvirt.String())) },
	} {
		t.Run(name, func(t *testing.T) {
			m, err := parse()
			if err != nil {
				t.Fatal(err)
			}
			wantNICs(t, m)
		})
	}
}
