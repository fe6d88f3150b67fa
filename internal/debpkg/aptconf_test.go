package debpkg

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// fixtureOptions point apt at the sources of testdata/host instead of the host's.
func fixtureOptions(t *testing.T) []string {
	t.Helper()
	etc, err := filepath.Abs("testdata/host/etc/apt")
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-o", "Dir::Etc::sourcelist=" + filepath.Join(etc, "sources.list"), "-o", "Dir::Etc::sourceparts=" + filepath.Join(etc, "sources.list.d")}
}

func TestSourcesForMovesTheHostsDebianSourcesToASuite(t *testing.T) {
	hostreq.Need(t, "apt-get")
	targets, err := hostIndexTargets(context.Background(), fixtureOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	codename, err := hostCodename("testdata/host")
	if err != nil || codename != "bookworm" {
		t.Fatalf("codename %q, %v", codename, err)
	}
	keyring := "/usr/share/keyrings/debian-archive-keyring.gpg"
	for _, tc := range []struct{ suite, want string }{
		{"bookworm", "deb [signed-by=" + keyring + "] http://mirror.example.org/debian bookworm main\n" +
			"deb [signed-by=" + keyring + "] http://mirror.example.org/debian bookworm-updates main\n" +
			"deb [signed-by=" + keyring + "] http://security.example.org/debian-security bookworm-security main\n"},
		{"trixie", "deb [signed-by=" + keyring + "] http://mirror.example.org/debian trixie main\n" +
			"deb [signed-by=" + keyring + "] http://mirror.example.org/debian trixie-updates main\n" +
			"deb [signed-by=" + keyring + "] http://security.example.org/debian-security trixie-security main\n"},
	} {
		got, err := sourcesFor(targets, codename, tc.suite, keyring)
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := strings.Cut(got, "\n") // after the comment
		if body != tc.want {
			t.Errorf("sources for %s:\n%s\nwant:\n%s", tc.suite, body, tc.want)
		}
	}
	if _, err := sourcesFor(targets, "trixie", "trixie", ""); err == nil || !strings.Contains(err.Error(), "no trixie entry") {
		t.Errorf("sources of a release the host has no entry for: %v", err)
	}
}

func TestLaterReleases(t *testing.T) {
	if got := laterReleases("bookworm"); !slices.Equal(got, []string{"bookworm", "trixie", "forky"}) {
		t.Errorf("after bookworm: %q", got)
	}
	if got := laterReleases("sid"); !slices.Equal(got, []string{"sid"}) {
		t.Errorf("after sid: %q", got)
	}
}

// TestPrepareAptLeavesTheHostAlone fetches riscv64's package lists, which bookworm lacks and
// trixie has, into polyvisor's own configuration, and checks that neither dpkg's
// architectures nor the host's apt sources and lists changed.
func TestPrepareAptLeavesTheHostAlone(t *testing.T) {
	requireRootAndApt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := hostAptState(t)
	cache := t.TempDir()
	start := time.Now()
	apt, err := prepareApt(ctx, cache, "riscv64")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("riscv64 package lists fetched in %v", time.Since(start).Round(time.Millisecond))
	if !hasPackageLists(apt.lists(), "riscv64") {
		t.Fatal("no riscv64 package list")
	}
	sources, err := os.ReadFile(apt.sourcesList())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sources:\n%s", sources)
	codename, err := hostCodename("/")
	if err != nil {
		t.Fatal(err)
	}
	if codename == "bookworm" && !strings.Contains(string(sources), " trixie main") {
		t.Errorf("riscv64 on a bookworm host should come from trixie: %s", sources)
	}
	fields, err := show(ctx, apt, "busybox-static")
	if err != nil || fields["Architecture"] != "riscv64" {
		t.Fatalf("busybox-static: %v, %v", fields["Architecture"], err)
	}
	start = time.Now()
	if _, err := prepareApt(ctx, cache, "riscv64"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a second prepareApt took %v: fresh lists should be kept", took)
	}
	if after := hostAptState(t); after != before {
		t.Fatalf("the host's apt state changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestPrepareAptRefusesAnArchNoReleaseShips checks that an architecture that neither the
// host's release nor a later one ships (mips, dropped after buster) fails in one line naming
// what was tried, and leaves no configuration behind.
func TestPrepareAptRefusesAnArchNoReleaseShips(t *testing.T) {
	requireRootAndApt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cache := t.TempDir()
	_, err := prepareApt(ctx, cache, "mips")
	if !errors.Is(err, ErrArchUnavailable) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "tried ") {
		t.Fatalf("prepareApt(mips) = %q, want one line with ErrArchUnavailable and the releases tried", err)
	}
	t.Logf("%v", err)
	if _, err := os.Stat(filepath.Join(cache, "apt", "mips")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("apt configuration for mips left behind: %v", err)
	}
}

// hostAptState sums up what prepareApt must not change: dpkg's architectures and the host's
// apt sources and package lists.
func hostAptState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	native, err := run(ctx, "", "dpkg", "--print-architecture")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := run(ctx, "", "dpkg", "--print-foreign-architectures")
	if err != nil {
		t.Fatal(err)
	}
	state := strings.Join(strings.Fields(string(native)+" "+string(foreign)), " ")
	for _, glob := range []string{"/etc/apt/sources.list*", "/etc/apt/sources.list.d/*", "/var/lib/apt/lists/*"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if info, err := os.Stat(f); err == nil {
				state += " " + filepath.Base(f) + "@" + info.ModTime().Format(time.RFC3339Nano)
			}
		}
	}
	return state
}
