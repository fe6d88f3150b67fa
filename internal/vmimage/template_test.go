package vmimage_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/debpkg"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vmimage"
)

// workDir holds the templates the tests share; TestMain removes it.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "polyvisor-vmimage-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	// VMIMAGE_KEEP=1 keeps the built templates, to boot them by hand.
	if os.Getenv("VMIMAGE_KEEP") == "" {
		os.RemoveAll(dir)
	} else {
		fmt.Println("kept", dir)
	}
	os.Exit(code)
}

// builtTemplate is a VM template built once and booted by several tests.
type builtTemplate struct {
	dir  string
	boot vmimage.Boot
	took time.Duration
	err  error
}

// shared holds one template per source and architecture ("busybox/arm64"); building one takes
// a while, booting it many times does not.
var shared = struct {
	sync.Mutex
	byKey map[string]*builtTemplate
}{byKey: map[string]*builtTemplate{}}

func requireVMTools(t *testing.T, qemu string) {
	t.Helper()
	testgate.RequireRoot(t, "building a VM template needs root (dpkg --add-architecture, root-owned trees)")
	for _, tool := range []string{qemu, "qemu-img", "mke2fs", "apt-get", "dpkg-deb", "xz", "go"} {
		hostreq.Need(t, tool)
	}
}

var qemuOf = map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}

// sharedTemplate returns the template of source ("busybox" or "debian") for arch, building it
// on first use with buildTree filling its root tree.
func sharedTemplate(t *testing.T, source, arch string) *builtTemplate {
	t.Helper()
	requireVMTools(t, qemuOf[arch])
	shared.Lock()
	defer shared.Unlock()
	key := source + "/" + arch
	if b, ok := shared.byKey[key]; ok {
		if b.err != nil {
			t.Fatalf("building the %s template failed earlier: %v", key, b.err)
		}
		return b
	}
	b := &builtTemplate{dir: filepath.Join(workDir, source+"-"+arch)}
	shared.byKey[key] = b
	b.err = buildTemplate(t, b, source, arch)
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b
}

func buildTemplate(t *testing.T, b *builtTemplate, source, arch string) error {
	ctx := ctxFor(t, 5*time.Minute)
	rootfs := filepath.Join(b.dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	agent, err := buildAgentStandIn(b.dir, arch)
	if err != nil {
		return err
	}
	start := time.Now()
	switch source {
	case "busybox":
		err = template.BuildBusyboxArch(ctx, rootfs, arch, debpkg.DefaultCacheDir, nil)
	case "debian":
		err = template.BuildDebian(ctx, rootfs, template.DefaultSuite, arch, nil)
	}
	if err != nil {
		return err
	}
	treeTook := time.Since(start)
	var phases []string
	phaseStart := time.Now()
	progress := func(phase string, done, total int64) {
		if len(phases) > 0 && phases[len(phases)-1] == phase {
			return
		}
		if len(phases) > 0 {
			phases[len(phases)-1] += fmt.Sprintf(" %.1fs", time.Since(phaseStart).Seconds())
		}
		phases = append(phases, phase)
		phaseStart = time.Now()
	}
	start = time.Now()
	b.boot, err = vmimage.Build(ctx, vmimage.Spec{Rootfs: rootfs, Arch: arch, OutDir: b.dir, CacheDir: debpkg.DefaultCacheDir, Agent: agent}, progress)
	if err != nil {
		return err
	}
	b.took = time.Since(start)
	phases[len(phases)-1] += fmt.Sprintf(" %.1fs", time.Since(phaseStart).Seconds())
	t.Logf("%s %s template: tree %.1fs, vmimage.Build %.1fs: %q", source, arch, treeTook.Seconds(), b.took.Seconds(), phases)
	t.Logf("%s %s boot: %+v", source, arch, b.boot)
	for _, name := range []string{b.boot.Kernel, b.boot.Initrd, b.boot.Disk} {
		info, err := os.Stat(filepath.Join(b.dir, name))
		if err != nil {
			return err
		}
		t.Logf("%s %s: %s %.1f MiB", source, arch, name, float64(info.Size())/(1<<20))
	}
	return nil
}

// agentMarker is what the stand-in for the guest agent prints once started; growRootMarker
// what it prints when sysinit runs it as "polyvisor-agent grow-root".
const (
	agentMarker    = "POLYVISOR-AGENT-STANDIN"
	growRootMarker = "POLYVISOR-GROW-ROOT-STANDIN"
)

// buildAgentStandIn builds, for arch, a static Go program that prints agentMarker and
// sleeps, or prints growRootMarker and exits when its first argument is grow-root: it stands
// in for cmd/polyvisor-agent, proving that init starts what Build installs.
func buildAgentStandIn(dir, arch string) (string, error) {
	src := filepath.Join(dir, "agent-standin.go")
	code := `package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "grow-root" {
		fmt.Println("` + growRootMarker + `")
		return
	}
	fmt.Println("` + agentMarker + `")
	for {
		time.Sleep(time.Hour)
	}
}
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "polyvisor-agent")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	var out bytes.Buffer
	build.Stdout, build.Stderr = &out, &out
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build the agent stand-in for %s: %w: %s", arch, err, out.String())
	}
	return bin, nil
}
