package network

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// parseLeases reads dnsmasq's lease file: one lease a line, "EXPIRY MAC IP
// HOSTNAME CLIENT-ID", EXPIRY in seconds since the epoch (0: never), "*"
// for an unknown hostname. Lines it cannot read are skipped.
func parseLeases(r io.Reader) []api.Lease {
	leases := []api.Lease{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 4 {
			continue
		}
		expiry, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		l := api.Lease{MAC: f[1], IPv4: f[2]}
		if expiry > 0 {
			l.Expires = time.Unix(expiry, 0).UTC()
		}
		if f[3] != "*" {
			l.Hostname = f[3]
		}
		leases = append(leases, l)
	}
	return leases
}
