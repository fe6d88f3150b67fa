package peer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// Names Incus knows the bench's things by, inside its private daemon.
const (
	incusImage = "pv-bench-busybox"
	incusPool  = "pv-bench"
)

// incusStopTimeout is how long a clean stop may take before it is forced.
// Measured here: busybox init, told to power off, ends its processes and
// exits in about 2.6 s, and incus stop returns 4.4-5.4 s after it began
// (a forced stop alone takes 1.7-2.3 s: Incus's own stop work).
const incusStopTimeout = "10"

// Incus is bench's Incus peer: a private incusd, a child of bench with its
// own INCUS_DIR, database and socket under Env.Dir, a dir storage pool
// under Env.Dir, no network at all, and the busybox tree imported as a
// local image. Its guests are unprivileged containers (Incus's default id
// map: container root is host uid 1000000, the same base as polyvisor's).
// Incus VMs are not driven here: see IncusVMReason.
type Incus struct {
	env    Env
	bin    string // the incus CLI
	daemon *incusDaemon

	mu     sync.Mutex
	guests map[string]bool // created and not yet deleted
	// vmWarning is incusd's own word on its VM driver, read at Setup.
	vmWarning string
}

// NewIncus returns an Incus peer; Setup starts its daemon.
func NewIncus() *Incus { return &Incus{guests: map[string]bool{}} }

func (m *Incus) stateDir() string  { return filepath.Join(m.env.Dir, "incus") }
func (m *Incus) clientDir() string { return filepath.Join(m.env.Dir, "incus-client") }
func (m *Incus) poolDir() string   { return filepath.Join(m.env.Dir, "pool") }

// environ is the environment of incusd and of the CLI: the private state
// dir, and the client's config under Env.Dir instead of root's home.
func (m *Incus) environ() []string {
	env := []string{"INCUS_DIR=" + m.stateDir(), "INCUS_CONF=" + m.clientDir()}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INCUS_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	// incusd runs its helpers from its own directory, as Debian's
	// service does.
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return append(env, "PATH="+filepath.Dir(hostreq.IncusDaemon)+":"+path)
}

// Setup starts incusd, initialises it with a dir pool and no network, and
// imports the busybox tree as image pv-bench-busybox.
func (m *Incus) Setup(ctx context.Context, env Env) error {
	m.env = env
	bin, err := hostreq.Lookup("incus")
	if err != nil {
		return fmt.Errorf("incus: %w", err)
	}
	daemon, err := hostreq.Lookup(hostreq.IncusDaemon)
	if err != nil {
		return fmt.Errorf("incus: %w", err)
	}
	m.bin = bin
	if err := searchableByGuests(env.Dir); err != nil {
		return fmt.Errorf("incus: %w", err)
	}
	for _, dir := range []string{m.stateDir(), m.clientDir(), m.poolDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("incus: %w", err)
		}
	}
	m.daemon, err = startIncusd(daemon, filepath.Join(env.Dir, "incusd.log"), m.environ())
	if err != nil {
		return fmt.Errorf("incus: %w", err)
	}
	if err := m.waitReady(ctx); err != nil {
		return err
	}
	if _, err := m.run(ctx, strings.NewReader(m.preseed()), "admin", "init", "--preseed"); err != nil {
		return err
	}
	meta, err := m.writeMetadata()
	if err != nil {
		return fmt.Errorf("incus: image metadata: %w", err)
	}
	if _, err := m.run(ctx, nil, "image", "import", meta, env.RootTar, "--alias", incusImage); err != nil {
		return err
	}
	m.vmWarning = m.readVMWarning(ctx)
	return nil
}

// searchableByGuests makes dir searchable by others and checks that its
// parents are: a container's root, an unprivileged host uid, walks down
// to its rootfs under INCUS_DIR.
func searchableByGuests(dir string) error {
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("env dir %s: its parent %s (mode %04o) is not searchable by others, and the guests' unprivileged root must reach its rootfs below it: chmod o+x %s, or put the dir elsewhere", dir, d, fi.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}

// waitReady waits for incusd's API, or says why incusd ended first, in
// its own last words.
func (m *Incus) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	done := make(chan struct{})
	defer close(done)
	go func() { // ends with this function: done is closed on return
		select {
		case <-m.daemon.exited:
			cancelWait()
		case <-done:
		}
	}()
	_, err := m.run(waitCtx, nil, "admin", "waitready", "--timeout", strconv.Itoa(int(StepTimeout/time.Second)))
	select {
	case <-m.daemon.exited:
		return fmt.Errorf("incus: incusd exited (%v): %s", m.daemon.waitErr, m.daemon.lastWords())
	default:
	}
	if err != nil {
		return fmt.Errorf("%w (incusd: %s)", err, m.daemon.lastWords())
	}
	return nil
}

// preseed is incusd's initial configuration: a dir pool under Env.Dir, a
// default profile with a root disk and nothing else (no NIC, so no bridge
// and no NAT), each guest's limits, and busybox init's power-off signal as
// the halt signal (it ignores Incus's default, SIGPWR).
func (m *Incus) preseed() string {
	var limits string
	if m.env.CPUs > 0 {
		limits += fmt.Sprintf("    limits.cpu: \"%d\"\n", m.env.CPUs)
	}
	if m.env.MemoryMiB > 0 {
		limits += fmt.Sprintf("    limits.memory: %dMiB\n", m.env.MemoryMiB)
	}
	return fmt.Sprintf(`config:
  images.auto_update_interval: "0"
storage_pools:
- name: %s
  driver: dir
  config:
    source: %s
profiles:
- name: default
  config:
%s    raw.lxc: lxc.signal.halt = SIGUSR2
  devices:
    root:
      type: disk
      path: /
      pool: %s
`, incusPool, m.poolDir(), limits, incusPool)
}

// writeMetadata writes the metadata tarball of a split image (the rootfs
// half is Env.RootTar) and returns its path.
func (m *Incus) writeMetadata() (string, error) {
	yaml := fmt.Sprintf("architecture: %s\ncreation_date: %d\nproperties:\n  description: polyvisor bench busybox\n  os: busybox\n",
		arch.Host().QEMU, time.Now().Unix())
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "metadata.yaml", Mode: 0o644, Size: int64(len(yaml)), ModTime: time.Now()}); err != nil {
		return "", err
	}
	if _, err := tw.Write([]byte(yaml)); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(m.env.Dir, "metadata.tar")
	return path, os.WriteFile(path, buf.Bytes(), 0o600)
}

// Create makes stopped container id from the image; the default profile
// gives it its limits and root disk.
func (m *Incus) Create(ctx context.Context, id string) error {
	m.mu.Lock()
	m.guests[id] = true // Close tries to delete it even if init fails halfway
	m.mu.Unlock()
	_, err := m.run(ctx, nil, "init", incusImage, id)
	return err
}

// Start starts container id and returns once a command runs in it.
func (m *Incus) Start(ctx context.Context, id string) error {
	if _, err := m.run(ctx, nil, "start", id); err != nil {
		return fmt.Errorf("%w; its log: %s", err, m.instanceLog(ctx, id))
	}
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	for {
		_, err := m.run(ctx, nil, "exec", id, "-T", "--", "true")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("incus %s: no command ran in it after start: %w", id, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// instanceLog is the last error liblxc logged for container id, where
// incus start's own error points to.
func (m *Incus) instanceLog(ctx context.Context, id string) string {
	out, err := m.run(ctx, nil, "info", "--show-log", id)
	if err != nil {
		return err.Error()
	}
	var last string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "ERROR") {
			last = strings.TrimSpace(line)
		}
	}
	if last == "" {
		return "(no error logged)"
	}
	return last
}

// Stop asks container id's init to power off, and forces it after
// incusStopTimeout seconds.
func (m *Incus) Stop(ctx context.Context, id string) error {
	_, err := m.run(ctx, nil, "stop", id, "--timeout", incusStopTimeout)
	if err == nil {
		return nil
	}
	if _, ferr := m.run(ctx, nil, "stop", id, "--force"); ferr != nil && !strings.Contains(ferr.Error(), "already stopped") {
		return errors.Join(err, ferr)
	}
	return nil
}

// Delete removes stopped container id and its storage volume.
func (m *Incus) Delete(ctx context.Context, id string) error {
	if _, err := m.run(ctx, nil, "delete", id); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.guests, id)
	m.mu.Unlock()
	return removeIncusCgroups(id)
}

// Exec runs argv in container id with incus exec, without a terminal, and
// returns its exit code, which incus exec passes on. A failure of incus
// itself (the guest is not running) also reads as exit code 1, with
// incus's "Error: ..." line on stderr.
func (m *Incus) Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := exec.CommandContext(ctx, m.bin, append([]string{"exec", id, "-T", "--"}, argv...)...)
	cmd.Env = m.environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("incus exec %s: %w", id, err)
	}
	return 0, nil
}

// PIDs returns container id's [lxc monitor] and every process under it:
// the guest's init and what init runs.
func (m *Incus) PIDs(ctx context.Context, id string) ([]int, error) {
	init, err := m.initPID(ctx, id)
	if err != nil {
		return nil, err
	}
	monitor, err := parentPID(init)
	if err != nil {
		return nil, fmt.Errorf("incus %s: monitor of init %d: %w", id, init, err)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", monitor)); !bytes.HasPrefix(cmd, []byte("[lxc monitor] ")) {
		return nil, fmt.Errorf("incus %s: init %d's parent %d is %q, not its [lxc monitor]", id, init, monitor, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
	}
	return descendants(monitor)
}

// initPID is the host pid of container id's init, as incusd reports it.
func (m *Incus) initPID(ctx context.Context, id string) (int, error) {
	out, err := m.run(ctx, nil, "query", "/1.0/instances/"+id+"/state")
	if err != nil {
		return 0, err
	}
	var state struct {
		Status string `json:"status"`
		PID    int    `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &state); err != nil {
		return 0, fmt.Errorf("incus %s: state: %w", id, err)
	}
	if state.PID <= 0 {
		return 0, fmt.Errorf("incus %s: no init pid: it is %s", id, strings.ToLower(state.Status))
	}
	return state.PID, nil
}

// VMWarning is what incusd said at Setup about its VM driver ("" when it
// found nothing wrong): its own words on why it cannot run VMs here.
func (m *Incus) VMWarning() string { return m.vmWarning }

// readVMWarning reads incusd's warning that its qemu instance type is not
// operational.
func (m *Incus) readVMWarning(ctx context.Context) string {
	out, err := m.run(ctx, nil, "query", "/1.0/warnings?recursion=1")
	if err != nil {
		return ""
	}
	var warnings []struct {
		Type        string `json:"type"`
		LastMessage string `json:"last_message"`
	}
	if json.Unmarshal([]byte(out), &warnings) != nil {
		return ""
	}
	for _, w := range warnings {
		if w.Type == "Instance type not operational" {
			return w.Type + ": " + w.LastMessage
		}
	}
	return ""
}

// run runs the incus CLI against the private daemon and returns its
// output; an error carries the command and incus's last line on stderr.
func (m *Incus) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	if m.bin == "" {
		return "", errors.New("incus: not set up")
	}
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Env = m.environ()
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("incus %s: %w: %s", strings.Join(args, " "), err, lastLine(stderr.String()))
	}
	return stdout.String(), nil
}

// IncusVMReason says in one line why bench measures no Incus VMs on this
// host.
func IncusVMReason() string {
	why := "make deps installs incus-base, Incus's container-only daemon: Debian's incus package, which adds VMs, needs QEMU 8 or later " +
		"and would replace the host's QEMU that polyvisor's own VMs are measured with"
	switch {
	case !exists("/dev/kvm"):
		why += "; and Incus runs VMs only with KVM, and this host has no /dev/kvm"
	case exists("/sys/module/kvm_pvm"):
		why += "; and Incus runs VMs only with KVM, and this host's /dev/kvm is kvm_pvm (nested PVM), which boots only guest kernels built for PVM"
	}
	return why
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
