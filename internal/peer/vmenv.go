package peer

import (
	"fmt"
	"strings"
)

// AgentPort is the virtio-serial port polyvisor's guest agent listens on.
const AgentPort = "org.polyvisor.agent"

// VMEnvOf reads the boot of a running polyvisor VM from its QEMU's
// command line: the argv, the base disk under its root overlay and its
// direct-boot kernel, initrd and command line.
func VMEnvOf(pid int) (*VMEnv, error) {
	argv, err := Cmdline(pid)
	if err != nil {
		return nil, fmt.Errorf("read QEMU's command line: %w", err)
	}
	disk := RootDisk(argv)
	if disk == "" {
		return nil, fmt.Errorf("no root disk in QEMU's command line")
	}
	base, err := BackingOf(disk)
	if err != nil {
		return nil, err
	}
	env := &VMEnv{Argv: argv, Base: base, Accel: "tcg", AgentPort: AgentPort}
	for i := 1; i < len(argv); i++ {
		switch argv[i-1] {
		case "-kernel":
			env.Kernel = argv[i]
		case "-initrd":
			env.Initrd = argv[i]
		case "-append":
			env.Append = argv[i]
		case "-machine", "-M":
			for _, opt := range strings.Split(argv[i], ",") {
				if v, ok := strings.CutPrefix(opt, "accel="); ok {
					env.Accel, _, _ = strings.Cut(v, ":")
				}
			}
		}
	}
	return env, nil
}
