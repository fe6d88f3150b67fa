//go:build !amd64

package vmimage

// hostTSCkHz reports no TSC: on other hosts, QEMU's TCG gives an x86 guest the host's own
// counter (on arm64, the generic timer), whose frequency we do not read yet.
func hostTSCkHz() (uint64, bool) { return 0, false }
