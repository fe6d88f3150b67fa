package template

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeAptRoot makes a directory holding etc/apt with the given files, by path under etc/apt.
func fakeAptRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/apt/sources.list.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, "etc/apt", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// The formats below are those of a Debian bookworm host, with third-party entries added.
const (
	debianDeb822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`
	securityFirstDeb822 = `Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://updates.example.org/debian
Suites: bookworm-updates bookworm-backports
Components: main

Types: deb-src
URIs: http://source.example.org/debian
Suites: bookworm
Components: main
`
	nodesourceDeb822 = `Types: deb
URIs: https://deb.nodesource.example/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/nodesource.gpg
`
	cloudSDKList = "deb https://packages.cloud.example/apt cloud-sdk-bookworm main\n"
	// A third party that does use a Debian suite name and "main".
	phpList = "deb [signed-by=/usr/share/keyrings/php.gpg] https://packages.php.example/php/ bookworm main\n"
)

func TestMirrorFromHostDeb822(t *testing.T) {
	root := fakeAptRoot(t, map[string]string{
		"sources.list.d/00-php.list":             phpList,
		"sources.list.d/10-security.sources":     securityFirstDeb822,
		"sources.list.d/debian.sources":          debianDeb822,
		"sources.list.d/google-cloud-sdk.list":   cloudSDKList,
		"sources.list.d/nodesource.sources":      nodesourceDeb822,
		"sources.list.d/other.sources.disabled":  "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\n",
		"sources.list.d/switched-off.sources":    "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n",
		"sources.list.d/contrib-only.sources":    "Types: deb\nURIs: http://contrib.example/debian\nSuites: bookworm\nComponents: contrib non-free\n",
		"sources.list.d/continuation.sources":    "# comment\nTypes: deb\nURIs:\n http://continued.example/mirror\nSuites: trixie\nComponents: main\n",
		"sources.list.d/unsupported-uri.sources": "Types: deb\nURIs: mirror+file:/etc/apt/mirrors.txt\nSuites: bookworm\nComponents: main\n",
	})
	got, err := MirrorFromHost(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://mirror.example.org/debian"; got != want {
		t.Fatalf("MirrorFromHost = %q, want %q", got, want)
	}
}

func TestMirrorFromHostOneLine(t *testing.T) {
	root := fakeAptRoot(t, map[string]string{
		"sources.list": `# deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_ - Official amd64 DVD Binary-1]/ bookworm main
# deb http://commented.example.org/debian/ bookworm main
deb http://security.example.org/debian-security bookworm-security main contrib
deb-src http://source.example.org/debian/ bookworm main
deb [ arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg ] http://ftp.example.net/debian/ bookworm main contrib # the mirror
deb http://ftp.example.net/debian/ bookworm-updates main
`,
		"sources.list.d/google-cloud-sdk.list": cloudSDKList,
	})
	got, err := MirrorFromHost(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://ftp.example.net/debian"; got != want {
		t.Fatalf("MirrorFromHost = %q, want %q", got, want)
	}
}

func TestMirrorFromHostTakesAnyDebianSuiteMirrorAsLastResort(t *testing.T) {
	root := fakeAptRoot(t, map[string]string{
		"sources.list": "deb http://apt.corp.example/mirror stable main\n" + cloudSDKList,
	})
	got, err := MirrorFromHost(root)
	if err != nil || got != "http://apt.corp.example/mirror" {
		t.Fatalf("MirrorFromHost = %q, %v", got, err)
	}
}

func TestMirrorFromHostWithoutDebianEntry(t *testing.T) {
	root := fakeAptRoot(t, map[string]string{
		"sources.list.d/nodesource.sources":    nodesourceDeb822,
		"sources.list.d/google-cloud-sdk.list": cloudSDKList,
		"sources.list.d/security.sources":      securityFirstDeb822,
	})
	if got, err := MirrorFromHost(root); err == nil {
		t.Fatalf("MirrorFromHost = %q, want an error", got)
	} else {
		t.Logf("error: %v", err)
	}
	if _, err := MirrorFromHost(t.TempDir()); err == nil {
		t.Fatal("MirrorFromHost without any sources succeeded")
	}
}

func TestMirrorFromThisHost(t *testing.T) {
	mirror, err := MirrorFromHost("/")
	if err != nil {
		t.Skipf("skipping: this host has no Debian mirror configured: %v", err)
	}
	t.Logf("this host's Debian mirror: %s", mirror)
}

func FuzzParseOneLineSources(f *testing.F) {
	f.Add(cloudSDKList)
	f.Add(phpList)
	f.Add("deb [ arch=amd64 ] http://x/debian bookworm main # c\ndeb [broken http://x b")
	f.Fuzz(func(t *testing.T, data string) {
		for _, src := range parseOneLineSources(data) {
			if len(src.uris) != 1 || len(src.suites) != 1 {
				t.Fatalf("entry %+v from %q", src, data)
			}
		}
	})
}

func FuzzParseDeb822Sources(f *testing.F) {
	f.Add(debianDeb822)
	f.Add(nodesourceDeb822)
	f.Add("Types: deb\n\tcontinued\n:\n \n#x\nURIs")
	f.Fuzz(func(t *testing.T, data string) {
		parseDeb822Sources(data)
	})
}
