package bochs

import (
	"fmt"
	"strings"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// Files of a running guest in its run directory.
const (
	rcName       = "bochsrc"     // the machine's configuration
	debuggerName = "debugger.rc" // commands for the built-in debugger
	logName      = "bochs.log"   // Bochs's own log (its devices' messages)
	outName      = "bochs.out"   // what Bochs prints on its standard output
	agentName    = "agent.sock"  // the monitor's end of com2, the agent's line
	rootDisk     = "disks/root.raw"
	diskKind     = "raw"
	consoleFD    = "/proc/self/fd/3" // the console pty, as the command line below leaves it
	bochsBIOS    = "/usr/share/bochs/BIOS-bochs-latest"
	vgaBIOS      = "/usr/share/vgabios/vgabios.bin"
	bochsProgram = "bochs" // Debian's wrapper: exec bochs-bin -q "$@"
)

// emulatedIPS is the instructions per second Bochs's clock assumes
// (cpu: ips=): it turns emulated instructions into the guest's time, which
// runs slower than the wall clock while the host emulates fewer a second.
// clock: sync=slowdown keeps it from running faster: with sync=none an
// idle guest's time raced ahead (14 minutes in its first 2.5 here) and
// Bochs took a whole host CPU skipping idle time; slowdown sleeps instead
// (12% of a CPU idle), for a boot about 10% longer (1 min 49 s against
// 1 min 40 s on a quiet host).
const emulatedIPS = 200_000_000

// machine is what one guest's bochsrc describes.
type machine struct {
	MemoryMiB int64
	CPUs      int
	Disk      string // the guest's raw disk, absolute
	Log       string // Bochs's log file, absolute
	// Agent adds com2 on the agent's pty (whose path the monitor puts in
	// place of monitor.AgentPtyArg on the command line).
	Agent bool
	// NIC, when set, is the bochsrc line of the guest's network card.
	NIC string
	// NoDisk boots nothing: the BIOS finds no bootable device and Bochs
	// exits, which is Check's canary.
	NoDisk bool
}

// bochsrc returns the configuration file of m. Every device is named
// rather than left to defaults: the display is rfb because Debian's build
// has no nogui library (and the VNC server it opens is reachable from no
// other namespace: see command), sound is dummy because the ALSA backend
// aborts Bochs when there is no sound card, and the serial console is a
// terminal device, the monitor's pty.
func (m machine) bochsrc() string {
	lines := []string{
		"# Written by polyvisor: a PC that boots its disk's MBR by BIOS, headless.",
		fmt.Sprintf("megs: %d", m.MemoryMiB),
		fmt.Sprintf("cpu: count=%d, ips=%d", m.CPUs, emulatedIPS),
		"romimage: file=" + bochsBIOS,
		"vgaromimage: file=" + vgaBIOS,
		`display_library: rfb, options="timeout=0"`,
		"pci: enabled=1, chipset=i440fx",
		"boot: disk",
		"log: " + m.Log,
		"panic: action=fatal",
		"error: action=report",
		"info: action=report",
		"debug: action=ignore",
		"speaker: enabled=0",
		"sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy",
		"clock: sync=slowdown, time0=utc",
	}
	if !m.NoDisk {
		lines = append(lines,
			"ata0-master: type=disk, path="+m.Disk+", mode=flat",
			"com1: enabled=1, mode=term, dev="+consoleFD,
		)
	}
	if m.NIC != "" {
		lines = append(lines, m.NIC)
	}
	return strings.Join(lines, "\n") + "\n"
}

// agentLine is the bochsrc line of com2, given on Bochs's command line so
// that the monitor replaces monitor.AgentPtyArg by the agent pty's path.
const agentLine = "com2: enabled=1, mode=term, dev=" + monitor.AgentPtyArg

// debuggerCommands are what Debian's bochs-bin, built with its internal
// debugger, runs before reading its standard input: c (continue) starts
// the machine instead of stopping at the debugger's prompt.
const debuggerCommands = "c\n"

// command returns the monitor's command for the guest, given the paths of
// unshare, sh and bochs. Bochs runs in a network namespace of its own
// (unshare --net), where its rfb display's VNC server listens on an
// interface nothing else can reach. sh keeps the pty the monitor made,
// the guest's console, as fd 3 for com1, and gives Bochs /dev/null as its
// standard input (the debugger reads commands there once the machine
// stops, and so ends at once) and a file for its standard output (its
// banner and the debugger's messages, which are not the guest's).
// -unlock drops the lock file a killed Bochs leaves beside the disk: the
// monitor runs one Bochs per guest, and the lock would refuse the next.
func command(unshare, sh, bochs, runDir string, agent bool) []string {
	argv := []string{
		unshare, "--net", "--",
		sh, "-c", `exec "$0" "$@" 3<&0 </dev/null >>` + outName,
		bochs, "-unlock", "-f", runDir + "/" + rcName, "-rc", runDir + "/" + debuggerName,
	}
	if agent {
		argv = append(argv, agentLine)
	}
	return argv
}
