package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/arch"
)

// TestGuestArchesMatchTheMakefile keeps BuildBinaries, the Makefile's AGENT_ARCHES and the
// architectures polyvisor builds VM templates for in step: a template of an arch whose agent
// make build does not make fails to build.
func TestGuestArchesMatchTheMakefile(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var agentArches []string
	for _, line := range strings.Split(string(makefile), "\n") {
		if value, ok := strings.CutPrefix(line, "AGENT_ARCHES :="); ok {
			agentArches = strings.Fields(value)
		}
	}
	if !slices.Equal(agentArches, GuestArches) {
		t.Errorf("Makefile's AGENT_ARCHES %q, testenv's GuestArches %q", agentArches, GuestArches)
	}
	var goarches []string
	for _, a := range arch.All() {
		goarches = append(goarches, a.GOARCH)
	}
	if !slices.Equal(goarches, GuestArches) {
		t.Errorf("arch.All()'s GOARCHes %q, GuestArches %q", goarches, GuestArches)
	}
}
