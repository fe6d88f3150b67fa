package debpkg

import (
	"strings"
	"testing"
)

func TestParseStanzaReadsFirstParagraphWithContinuations(t *testing.T) {
	text := "Package: linux-image-arm64\nVersion: 6.1.192-2\nDescription: Linux for\n 64-bit ARMv8 machines\n\nPackage: other\n"
	got := parseStanza(text)
	if got["Package"] != "linux-image-arm64" || got["Version"] != "6.1.192-2" {
		t.Fatalf("fields %q", got)
	}
	if got["Description"] != "Linux for\n64-bit ARMv8 machines" {
		t.Fatalf("Description %q", got["Description"])
	}
}

func TestParseStanzaSkipsClearsignArmor(t *testing.T) {
	text := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nArchitectures: all amd64 arm64\nMD5Sum:\n 0123 45 main/x\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
	got := parseStanza(text)
	if got["Architectures"] != "all amd64 arm64" || got["Origin"] != "Debian" {
		t.Fatalf("fields %q", got)
	}
	if _, ok := got["Hash"]; ok {
		t.Fatalf("armor header read as a field: %q", got)
	}
}

func TestVersionedDependency(t *testing.T) {
	for _, tc := range []struct{ meta, depends, want string }{
		{"linux-image-amd64", "linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "linux-image-6.1.0-56-amd64"},
		{"linux-image-arm64", "initramfs-tools | linux-initramfs-tool, linux-image-6.1.0-56-arm64:arm64 (= 6.1.192-2)", "linux-image-6.1.0-56-arm64"},
		{"linux-image-armmp-lpae", "linux-image-6.1.0-57-armmp-lpae (= 6.1.192-3)", "linux-image-6.1.0-57-armmp-lpae"},
		{"linux-image-powerpc64le", "linux-image-6.1.0-57-powerpc64le (= 6.1.192-3)", "linux-image-6.1.0-57-powerpc64le"},
		{"linux-image-riscv64", "linux-image-6.12.117+deb13-riscv64 (= 6.12.117-1)", "linux-image-6.12.117+deb13-riscv64"},
		{"linux-image-armmp", "linux-image-6.1.0-57-armmp-lpae (= 6.1.192-3)", ""},
		{"linux-image-amd64", "linux-image-amd64-signed", ""},
		{"linux-image-amd64", "", ""},
		{"busybox", "libc6 (>= 2.34)", ""},
	} {
		got, ok := versionedDependency(tc.meta, tc.depends)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("versionedDependency(%q, %q) = %q, %v; want %q", tc.meta, tc.depends, got, ok, tc.want)
		}
	}
}

func FuzzParseStanza(f *testing.F) {
	f.Add("Package: a\nVersion: 1\n")
	f.Add("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nA: b\n c\n-----BEGIN PGP SIGNATURE-----\n")
	f.Add(" leading continuation\n:\n\n\n#comment\nX:")
	f.Fuzz(func(t *testing.T, text string) {
		for key, value := range parseStanza(text) {
			if strings.ContainsAny(key, "\n") || key != strings.TrimSpace(key) {
				t.Fatalf("field name %q is not one trimmed line", key)
			}
			if value != strings.TrimSpace(value) {
				t.Fatalf("field %q has untrimmed value %q", key, value)
			}
		}
	})
}

func FuzzVersionedDependency(f *testing.F) {
	f.Add("linux-image-amd64", "linux-image-6.1.0-56-amd64 (= 6.1.192-2)")
	f.Add("-", ",|,")
	f.Fuzz(func(t *testing.T, meta, depends string) {
		if dep, ok := versionedDependency(meta, depends); ok && len(dep) <= len(meta) {
			t.Fatalf("versionedDependency(%q, %q) = %q, not longer than the metapackage", meta, depends, dep)
		}
	})
}
