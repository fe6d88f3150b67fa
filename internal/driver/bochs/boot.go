package bochs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// shellPrompt matches the prompt of the shell busybox init starts on the
// console ("/ # ", or bash's "root@name:~# ") at a line's end, where
// busybox's ash follows it with a cursor position query (ESC [6n).
var shellPrompt = lazyre.New(`(?m)[#$] (\x1b\[[0-9;]*[A-Za-z])*\r?$`)

// bootState says how far the console log of a booting guest has come.
type bootState int

const (
	bootNotYet  bootState = iota // the root disk's sysinit has not finished
	bootSysinit                  // its marker is out: init starts the agent and the shell
	bootPrompt                   // and the shell's prompt is on the console
)

// readBoot reads the console log.
func readBoot(log []byte) bootState {
	i := bytes.LastIndex(log, []byte(vmimage.BootedMarker))
	if i < 0 {
		return bootNotYet
	}
	if shellPrompt().Match(log[i+len(vmimage.BootedMarker):]) {
		return bootPrompt
	}
	return bootSysinit
}

// agentGrace is how long, after the guest's shell prompt showed, a boot
// waits for its agent on com2: it starts with the shell. A template built
// before its agent served /dev/ttyS1 has none there; the guest then runs
// with its console alone.
const agentGrace = 60 * time.Second

// agentDial bounds one try to reach the agent while the guest boots.
const agentDial = 20 * time.Second

// bootTimeout is the boot deadline of a guest with cpus CPUs: perCPU for
// each, as Bochs emulates them all in one thread, in turn (a 2-CPU busybox
// guest took 5 minutes here, a 1-CPU one 2 to 3).
func bootTimeout(perCPU time.Duration, cpus int) time.Duration {
	return perCPU * time.Duration(max(cpus, 1))
}

// waitBoot waits until the guest has booted: its agent answers, or, when
// none does, its shell prompt is on the console. It fails when Bochs ends
// or the boot timeout passes first.
func (d *Driver) waitBoot(ctx context.Context, def *guest.Definition) error {
	timeout := bootTimeout(d.opts.BootTimeout, def.CPUs)
	boot, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	proc := monitored.Process(def)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var prompted time.Time
	for {
		log, _ := os.ReadFile(d.ConsoleLog(def))
		state := readBoot(log)
		if state >= bootSysinit {
			// The agent starts with the shell. A handshake over the
			// emulated UART takes a while, and each dial replaces the
			// monitor's client: give one its time.
			reach, cancelReach := context.WithTimeout(boot, agentDial)
			_, err := d.agent(reach, def)
			cancelReach()
			if err == nil {
				return nil
			}
		}
		if state == bootPrompt {
			if prompted.IsZero() {
				prompted = time.Now()
			}
			if time.Since(prompted) > agentGrace {
				d.log.Warn("the guest's shell is up but no agent answers on its second serial line; it runs with its console alone", "guest", def.Name)
				return nil
			}
		}
		if !proc.Alive() {
			return fmt.Errorf("start %s: Bochs exited while the guest booted: %s", def.Name, d.whyExited(def))
		}
		select {
		case <-boot.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("start %s: the guest did not boot within %s (its console: %s)", def.Name, timeout, lastLines(log))
		case <-tick.C:
		}
	}
}

// whyExited says why Bochs ended, from its own output and log.
func (d *Driver) whyExited(def *guest.Definition) string {
	for _, name := range []string{outName, monitor.StderrName, logName} {
		data, _ := os.ReadFile(filepath.Join(d.runDir(def), name))
		if why := exitMessage(string(data)); why != "" {
			return why
		}
	}
	data, _ := os.ReadFile(d.ConsoleLog(def))
	return "its console: " + lastLines(data)
}

// exitMessage finds the message Bochs ends with ("Bochs is exiting with
// the following message: [BIOS  ] No bootable device.") in its output,
// or the last panic in its log; "" when there is none.
func exitMessage(out string) string {
	const exiting = "Bochs is exiting with the following message:"
	if i := strings.LastIndex(out, exiting); i >= 0 {
		rest := strings.TrimSpace(out[i+len(exiting):])
		line, _, _ := strings.Cut(rest, "\n")
		return strings.TrimSpace(line)
	}
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "p[") || strings.Contains(lines[i], "PANIC") {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

// lastLines returns the console's last three lines on one line, quoted.
func lastLines(log []byte) string {
	text := strings.TrimSpace(string(log))
	if text == "" {
		return "(nothing on the console)"
	}
	lines := strings.Split(text, "\n")
	var keep []string
	for _, l := range lines[max(0, len(lines)-3):] {
		keep = append(keep, strings.TrimSpace(l))
	}
	return fmt.Sprintf("%q", strings.Join(keep, " | "))
}

// errNoAgent is why a guest has no agent to run commands.
var errNoAgent = errors.New("no agent answers on the guest's second serial line (com2, /dev/ttyS1)")

// agent returns the guest's agent connection, dialling it if needed (see
// agent.Pool).
func (d *Driver) agent(ctx context.Context, def *guest.Definition) (*agent.Client, error) {
	c, err := d.agents.Get(ctx, def.Name, func(ctx context.Context) (*agent.Client, error) {
		return agent.Dial(ctx, d.agentSocket(def))
	})
	if err != nil {
		return nil, fmt.Errorf("reach the agent of %s: %w: %w", def.Name, errNoAgent, err)
	}
	return c, nil
}

// dropAgent forgets the guest's agent connection.
func (d *Driver) dropAgent(name string) { d.agents.Drop(name) }
