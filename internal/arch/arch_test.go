package arch

import "testing"

func TestParseAcceptsBothNames(t *testing.T) {
	for _, name := range []string{"arm64", "aarch64"} {
		a, err := Parse(name)
		if err != nil || a.Debian != "arm64" || a.QEMU != "aarch64" || a.GOARCH != "arm64" {
			t.Errorf("Parse(%q) = %+v, %v", name, a, err)
		}
	}
	if _, err := Parse("vax"); err == nil {
		t.Error("vax accepted")
	}
	if h := Host(); h.Debian == "" || h.QEMU == "" {
		t.Errorf("Host() = %+v", h)
	}
}
