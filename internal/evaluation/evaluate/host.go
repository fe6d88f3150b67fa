package evaluate

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/runc"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// hostFacts says which machine and software the report comes from.
func hostFacts(ctx context.Context, c *client.Client, check api.HostCheck) benchreport.Host {
	h := benchreport.Host{CPUs: runtime.NumCPU(), Versions: map[string]string{}}
	h.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel, h.Arch = unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])
	}
	h.CPUModel = cpuModel()
	h.MemoryBytes = meminfo()["MemTotal"]
	if info, err := c.Server(ctx); err == nil {
		h.Versions["polyvisor"] = info.Version
	}
	if out, err := exec.CommandContext(ctx, "qemu-system-"+h.Arch, "--version").Output(); err == nil {
		h.Versions["qemu"], _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	if version, err := runc.New("runc", "").Version(ctx); err == nil {
		h.Versions["runc"] = version
	}
	h.Accel, h.AccelReason = "tcg", "no VM class verdict"
	for _, v := range check.Classes {
		if v.Class != "qemu" {
			continue
		}
		h.Accel, h.AccelReason = v.Details["accel"], v.Details["kvm"]
	}
	return h
}

// cpuModel is the first "model name" (x86) or "Model" line of
// /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, ok := strings.Cut(s.Text(), ":")
		if key = strings.TrimSpace(key); ok && (key == "model name" || key == "Model") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// meminfo reads /proc/meminfo, in bytes.
func meminfo() map[string]int64 {
	out := map[string]int64{}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 {
			if n, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				out[strings.TrimSuffix(fields[0], ":")] = n << 10
			}
		}
	}
	return out
}

// usedMemory is the host memory in use: what is not available.
func usedMemory() int64 {
	m := meminfo()
	return m["MemTotal"] - m["MemAvailable"]
}
