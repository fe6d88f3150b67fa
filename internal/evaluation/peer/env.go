package peer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/agent"
)

// ContainerSpecOf reads the OCI config.json of the polyvisor container
// whose directory is guestDir (layout.GuestDir), for Env.Spec. The path is
// resolved inside guestDir.
func ContainerSpecOf(guestDir string) (*specs.Spec, error) {
	root, err := os.OpenRoot(guestDir)
	if err != nil {
		return nil, fmt.Errorf("read the container's spec: %w", err)
	}
	defer root.Close()
	name := filepath.Join("bundle", "config.json")
	data, err := root.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read the container's spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(guestDir, name), err)
	}
	if spec.Process == nil || spec.Root == nil || spec.Linux == nil {
		return nil, fmt.Errorf("%s lacks process, root or linux: not a polyvisor container's spec", filepath.Join(guestDir, name))
	}
	return &spec, nil
}

// VMEnvOf reads the boot of the running polyvisor VM whose QEMU is pid,
// for Env.VM: its argv, the base disk under its root overlay, its kernel,
// initrd, command line, accelerator and agent port.
func VMEnvOf(pid int) (*VMEnv, error) {
	argv, err := Cmdline(pid)
	if err != nil {
		return nil, fmt.Errorf("read QEMU's command line: %w", err)
	}
	disk := RootDisk(argv)
	if disk == "" {
		return nil, fmt.Errorf("process %d: no root disk (-drive %s…) in its command line: not a polyvisor VM's QEMU", pid, rootDrive)
	}
	base, err := BackingOf(disk)
	if err != nil {
		return nil, err
	}
	// polyvisor runs QEMU by name; the peers run the very binary it runs.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.IsAbs(exe) {
		argv = slices.Concat([]string{exe}, argv[1:])
	}
	return vmEnvOf(argv, base), nil
}

// vmEnvOf is the VMEnv of argv whose root overlay stands on base.
func vmEnvOf(argv []string, base string) *VMEnv {
	env := &VMEnv{Argv: argv, Base: base}
	for i := 1; i < len(argv); i++ {
		value := argv[i]
		switch argv[i-1] {
		case "-kernel":
			env.Kernel = value
		case "-initrd":
			env.Initrd = value
		case "-append":
			env.Append = value
		case "-machine", "-M", "-accel":
			for _, opt := range strings.Split(value, ",") {
				if a, ok := strings.CutPrefix(opt, "accel="); ok {
					env.Accel = a
				} else if argv[i-1] == "-accel" && !strings.Contains(opt, "=") {
					env.Accel = opt
				}
			}
		}
	}
	if slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, "name="+agent.PortName) }) {
		env.AgentPort = agent.PortName
	}
	return env
}
