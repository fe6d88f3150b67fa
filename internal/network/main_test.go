package network

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// inNetnsEnv marks the test binary re-run inside its own network namespace.
const inNetnsEnv = "POLYVISOR_NETWORK_TEST_NETNS"

// TestMain runs the package's tests inside a network namespace of their own
// (ip netns add), so that bridges, dnsmasq and DHCP traffic never touch the
// host's namespace; the namespace is deleted afterwards.
func TestMain(m *testing.M) {
	if os.Getenv(inNetnsEnv) != "" {
		if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
			fmt.Fprintln(os.Stderr, "bring lo up:", err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	if why := testgate.RootSkip("bridges and network namespaces need root"); why != "" {
		fmt.Println("network: skipped:", why)
		os.Exit(0)
	}
	ns := fmt.Sprintf("pv-nettest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "ip netns add %s: %v: %s\n", ns, err, out)
		os.Exit(1)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), inNetnsEnv+"="+ns)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	exec.Command("ip", "netns", "delete", ns).Run()
	if err != nil {
		if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
