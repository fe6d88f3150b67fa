package testenv

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// BuildStatic builds the command in the test's directory (a cmd/ package)
// as the Makefile does: static, for goarch, into dir as NAME-GOARCH.
func BuildStatic(tb testing.TB, name, goarch, dir string) string {
	tb.Helper()
	out := filepath.Join(dir, name+"-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s for %s: %v\n%s", name, goarch, err, b)
	}
	return out
}

// CheckStaticCrossBuilds builds the command in the test's directory for
// every guest architecture and checks that each is a static executable
// for that machine, which any guest userland can run.
func CheckStaticCrossBuilds(t *testing.T, name string) {
	testgate.RequireLong(t, "builds the command for three architectures")
	dir := t.TempDir()
	for goarch, machine := range map[string]elf.Machine{
		"amd64":   elf.EM_X86_64,
		"arm64":   elf.EM_AARCH64,
		"riscv64": elf.EM_RISCV,
	} {
		t.Run(goarch, func(t *testing.T) {
			f, err := elf.Open(BuildStatic(t, name, goarch, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != machine || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
				t.Fatalf("machine %v class %v type %v, want %v ELFCLASS64 ET_EXEC", f.Machine, f.Class, f.Type, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Fatalf("dynamically linked: has %v", p.Type)
				}
			}
		})
	}
}
