package importer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestDNSLabelMakesGuestNames(t *testing.T) {
	for in, want := range map[string]string{
		"Debian 12 (64-bit)": "debian-12-64-bit",
		"web_server.ova":     "web-server-ova",
		"2019 Server":        "g2019-server",
		"---":                "",
		"Ünïcode":            "n-code",
	} {
		if got := dnsLabel(in); got != want {
			t.Errorf("dnsLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTemplateNamePrefersAskedThenDefinitionThenFile(t *testing.T) {
	req := Request{Path: "/srv/images/My Appliance.ova"}
	if got, _ := templateName(req, "Web Server"); got != "web-server" {
		t.Errorf("from the definition: %q", got)
	}
	if got, _ := templateName(req, ""); got != "my-appliance" {
		t.Errorf("from the file: %q", got)
	}
	req.Name = "chosen"
	if got, _ := templateName(req, "Web Server"); got != "chosen" {
		t.Errorf("asked: %q", got)
	}
}

func TestImportRefusesBadRequestsAndLeavesNothing(t *testing.T) {
	store := template.Store{Dir: t.TempDir()}
	im := Importer{Templates: store}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, []byte("neither a disk nor an archive, just words"), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyDir := filepath.Join(dir, "empty")
	os.Mkdir(emptyDir, 0o755)
	for name, req := range map[string]Request{
		"relative path":     {Path: "disk.vmdk"},
		"missing file":      {Path: filepath.Join(dir, "missing.vmdk")},
		"bad firmware":      {Path: junk, Firmware: "coreboot"},
		"bad name":          {Path: junk, Name: "Bad_Name"},
		"unknown content":   {Path: junk, Name: "junk"},
		"not an OCI layout": {Path: emptyDir, Name: "empty"},
		"a device":          {Path: "/dev/null", Name: "null"},
	} {
		_, err := im.Import(context.Background(), req, nil)
		if err == nil {
			t.Errorf("%s: imported", name)
			continue
		}
		if !errors.Is(err, api.ErrInvalid) && !errors.Is(err, api.ErrNotFound) {
			t.Errorf("%s: %v, want an invalid or not-found error", name, err)
		}
	}
	if left, _ := os.ReadDir(store.Dir); len(left) > 0 {
		t.Errorf("failed imports left %v", left)
	}
}
