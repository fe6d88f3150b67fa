package vmimage

import (
	"runtime"
	"strings"
	"testing"
)

func TestTCGCmdlineGivesTheHostTSCFrequency(t *testing.T) {
	got := TCGCmdline("amd64")
	if runtime.GOARCH != "amd64" {
		if got != "" {
			t.Fatalf("TCGCmdline(amd64) on %s = %q", runtime.GOARCH, got)
		}
		return
	}
	khz, ok := hostTSCkHz()
	if !ok || khz < 100_000 || khz > 10_000_000 {
		t.Fatalf("host TSC %d kHz (%v): not a CPU's", khz, ok)
	}
	again, _ := hostTSCkHz()
	if diff := float64(khz) - float64(again); diff > float64(khz)/1000 || -diff > float64(khz)/1000 {
		t.Errorf("two measurements differ by more than 0.1%%: %d and %d kHz", khz, again)
	}
	if !strings.HasPrefix(got, "tsc_early_khz=") || !strings.HasSuffix(got, " tsc=reliable") {
		t.Fatalf("TCGCmdline(amd64) = %q", got)
	}
	t.Logf("TCGCmdline(amd64) = %q; again %d kHz", got, again)
	if TCGCmdline("arm64") != "" {
		t.Fatal("arm64 guests need no TCG options")
	}
}
