package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"golang.org/x/sys/unix"
)

// Files of a network's dnsmasq: its configuration and leases in the
// network's directory, its pid file in the run dir.
const (
	dnsmasqConf = "dnsmasq.conf"
	leasesFile  = "leases"
	pidFile     = "dnsmasq.pid"
)

// leaseTime is how long a lease lasts; guests renew at half of it.
const leaseTime = "1h"

// dnsmasqConfig returns the configuration of the network's dnsmasq: DHCP
// on the bridge alone, and DNS on the gateway answering NAME.polyvisor
// from the leases (expand-hosts, local=) and forwarding the rest to the
// host's resolvers, except on an isolated network, which gets neither a
// router nor names from outside. In a cluster it leases from the member's
// slot, answers the other members' guests' names too (addn-hosts), and
// tells guests the overlay's MTU.
func dnsmasqConfig(d *Definition, dir, runDir string) string {
	first, last := d.dhcpRange()
	mask := netipMask(d.Subnet.Bits())
	lines := []string{
		"# Written by polyvisor for network " + d.Name + "; it is rewritten on every daemon start.",
		"interface=" + d.Bridge,
		"bind-interfaces",
		"except-interface=lo",
		"listen-address=" + d.Gateway().String(),
		fmt.Sprintf("dhcp-range=%s,%s,%s,%s", first, last, mask, leaseTime),
		"dhcp-leasefile=" + filepath.Join(dir, leasesFile),
		"dhcp-hostsfile=" + filepath.Join(dir, hostsFile),
		"dhcp-authoritative",
		// Every address of the range is ours to give: no 3 s ICMP probe
		// before each offer, which would delay every guest's first lease.
		"no-ping",
		"dhcp-option=option:dns-server," + d.Gateway().String(),
		"domain=" + Domain,
		"local=/" + Domain + "/",
		"expand-hosts",
		"domain-needed",
		"bogus-priv",
		"no-hosts",
		"pid-file=" + filepath.Join(runDir, pidFile),
	}
	if d.Cluster != nil {
		lines = append(lines, "addn-hosts="+filepath.Join(dir, clusterHostsFile))
		if d.Cluster.MTU > 0 {
			lines = append(lines, fmt.Sprintf("dhcp-option=option:mtu,%d", d.Cluster.MTU))
		}
	}
	if d.Isolated {
		lines = append(lines, "dhcp-option=option:router", "no-resolv")
	} else {
		lines = append(lines, "dhcp-option=option:router,"+d.Gateway().String())
	}
	return strings.Join(lines, "\n") + "\n"
}

// netipMask writes a prefix length as a dotted mask.
func netipMask(bits int) string {
	m := uint32(0xffffffff) << (32 - bits)
	return fmt.Sprintf("%d.%d.%d.%d", byte(m>>24), byte(m>>16), byte(m>>8), byte(m))
}

// dnsmasq is one network's dnsmasq process.
type dnsmasq struct {
	conf, pid string
}

func newDnsmasq(dir, runDir string) dnsmasq {
	return dnsmasq{conf: filepath.Join(dir, dnsmasqConf), pid: filepath.Join(runDir, pidFile)}
}

// running returns the live dnsmasq serving conf, found through its pid
// file: the process must be dnsmasq started with this very configuration,
// so that a reused pid is never taken for it.
func (m dnsmasq) running() (procutil.Identity, bool) {
	data, err := os.ReadFile(m.pid)
	if err != nil {
		return procutil.Identity{}, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return procutil.Identity{}, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("--conf-file="+m.conf+"\x00")) {
		return procutil.Identity{}, false
	}
	id, err := procutil.Identify(pid)
	return id, err == nil && id.Alive()
}

// start runs dnsmasq, which reports configuration errors and a busy port
// before it detaches: its own daemon, outliving ours like the guests do.
func (m dnsmasq) start(ctx context.Context, config string) (procutil.Identity, error) {
	if err := os.MkdirAll(filepath.Dir(m.pid), 0o755); err != nil {
		return procutil.Identity{}, err
	}
	if err := fsutil.WriteFileAtomic(m.conf, []byte(config), 0o644); err != nil {
		return procutil.Identity{}, err
	}
	os.Remove(m.pid)
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "dnsmasq", Args: []string{"--conf-file=" + m.conf}}); err != nil {
		return procutil.Identity{}, fmt.Errorf("start dnsmasq: %w", err)
	}
	// The pid file is written by the detached child: wait for it.
	for range 50 {
		if id, ok := m.running(); ok {
			return id, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return procutil.Identity{}, errors.New("start dnsmasq: it detached but wrote no pid file")
}

// stop ends the network's dnsmasq, if it runs.
func (m dnsmasq) stop(ctx context.Context) error {
	id, ok := m.running()
	if !ok {
		return nil
	}
	if err := id.Signal(unix.SIGTERM); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := id.Wait(wait); err != nil {
		id.Signal(unix.SIGKILL)
		return id.Wait(ctx)
	}
	return nil
}

// configCurrent reports whether the file dnsmasq runs with says config.
func (m dnsmasq) configCurrent(config string) bool {
	data, err := os.ReadFile(m.conf)
	return err == nil && string(data) == config
}
