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
	if h := Host(); h.Debian == "" || h.QEMU == "" || h.Emulator == "" {
		t.Errorf("Host() = %+v", h)
	}
}

// TestForeignArchNames checks the names that differ between Debian, QEMU,
// Go and the guest's kernel.
func TestForeignArchNames(t *testing.T) {
	for _, tc := range []struct {
		names                                  []string
		debian, goarch, goarm, emulator, uname string
	}{
		{[]string{"riscv64"}, "riscv64", "riscv64", "", "qemu-system-riscv64", "riscv64"},
		{[]string{"ppc64el", "ppc64le"}, "ppc64el", "ppc64le", "", "qemu-system-ppc64", "ppc64le"},
		{[]string{"s390x"}, "s390x", "s390x", "", "qemu-system-s390x", "s390x"},
		{[]string{"armhf", "arm", "armv7l"}, "armhf", "arm", "7", "qemu-system-arm", "armv7l"},
	} {
		for _, name := range tc.names {
			a, err := Parse(name)
			if err != nil || a.Debian != tc.debian || a.GOARCH != tc.goarch || a.GOARM != tc.goarm || a.Emulator != tc.emulator || a.Uname != tc.uname {
				t.Errorf("Parse(%q) = %+v, %v", name, a, err)
			}
		}
	}
	for _, a := range All() {
		if a.Debian == "" || a.QEMU == "" || a.GOARCH == "" || a.Emulator == "" || a.Uname == "" {
			t.Errorf("%+v lacks a name", a)
		}
	}
}
