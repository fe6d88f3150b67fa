package daemon

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// An import that fails still reports the warnings found before it
// failed: a refusal must not hide why (issue 18).
func TestFailedImportOperationCarriesWarnings(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	vmx := filepath.Join(dir, "web.vmx")
	text := "config.version = \"8\"\ndisplayName = \"web\"\nsound.present = \"TRUE\"\n" +
		"scsi0:0.present = \"TRUE\"\nscsi0:0.deviceType = \"rawDisk\"\nscsi0:0.fileName = \"rdm.vmdk\"\n"
	if err := os.WriteFile(vmx, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	op := h.wait(h.begin(http.MethodPost, "/imports", api.Import{Path: vmx}))
	if op.Status != api.OpFailure || !strings.Contains(op.Error, "boot disk 1 is the raw device mapping rdm.vmdk") {
		t.Fatalf("import: %s %q, want a failure naming the boot disk", op.Status, op.Error)
	}
	for _, want := range []string{"sound card", `disk scsi0:0 is a host disk`} {
		if !slices.ContainsFunc(op.Warnings, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("warnings %q: none says %q", op.Warnings, want)
		}
	}
	if left := h.leftovers(); len(left) > 0 {
		t.Errorf("a failed import left %v", left)
	}
}
