package testenv

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// GuestArches are the GOARCHes the guest agent and probe are built for, as
// the Makefile's AGENT_ARCHES lists them (arm with GOARM=7: Debian's armhf).
var GuestArches = []string{"amd64", "arm64", "riscv64", "ppc64le", "s390x", "arm"}

// BuildStatic builds the command in the test's directory (a cmd/ package)
// as the Makefile does: static, for goarch, into dir as NAME-GOARCH.
func BuildStatic(tb testing.TB, name, goarch, dir string) string {
	tb.Helper()
	out := filepath.Join(dir, name+"-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM=7")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s for %s: %v\n%s", name, goarch, err, b)
	}
	return out
}

// CheckStaticCrossBuilds builds the command in the test's directory for
// every guest architecture and checks that each is a static executable
// for that machine, which any guest userland can run.
func CheckStaticCrossBuilds(t *testing.T, name string) {
	testgate.RequireLong(t, "builds the command for every guest architecture")
	dir := t.TempDir()
	want := map[string]struct {
		machine elf.Machine
		class   elf.Class
	}{
		"amd64":   {elf.EM_X86_64, elf.ELFCLASS64},
		"arm64":   {elf.EM_AARCH64, elf.ELFCLASS64},
		"riscv64": {elf.EM_RISCV, elf.ELFCLASS64},
		"ppc64le": {elf.EM_PPC64, elf.ELFCLASS64},
		"s390x":   {elf.EM_S390, elf.ELFCLASS64},
		"arm":     {elf.EM_ARM, elf.ELFCLASS32},
	}
	for _, goarch := range GuestArches {
		t.Run(goarch, func(t *testing.T) {
			w, ok := want[goarch]
			if !ok {
				t.Fatalf("no ELF machine known for %s", goarch)
			}
			f, err := elf.Open(BuildStatic(t, name, goarch, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != w.machine || f.Class != w.class || f.Type != elf.ET_EXEC {
				t.Fatalf("machine %v class %v type %v, want %v %v ET_EXEC", f.Machine, f.Class, f.Type, w.machine, w.class)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Fatalf("dynamically linked: has %v", p.Type)
				}
			}
		})
	}
}
