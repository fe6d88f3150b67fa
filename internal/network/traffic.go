package network

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/polyvisor/polyvisor/internal/guest"
)

// Traffic is how many bytes a running guest has received and sent on its
// networks, counted on the host's end of each of its NICs (a veth or a
// tap), where what the host sends the guest receives. It asks the kernel
// by netlink, in the daemon's network namespace (sysfs would show the
// namespace that mounted it instead). A NIC not plugged (yet) counts
// nothing.
func Traffic(def *guest.Definition) (received, transmitted int64, err error) {
	for _, n := range def.Networks {
		name := GuestNIC(def, n).HostIf
		link, err := netlink.LinkByName(name)
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("traffic of %s on %s: %w", def.Name, name, err)
		}
		if st := link.Attrs().Statistics; st != nil {
			received += int64(st.TxBytes)
			transmitted += int64(st.RxBytes)
		}
	}
	return received, transmitted, nil
}
