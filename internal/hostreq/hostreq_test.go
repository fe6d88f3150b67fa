package hostreq

import (
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the root of the source tree this test was compiled from.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestTheListIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range All() {
		if seen[r.Name] {
			t.Errorf("%s is declared twice", r.Name)
		}
		seen[r.Name] = true
		if r.Feature == "" {
			t.Errorf("%s: no feature says what needs it", r.Name)
		}
		if (r.Package == "") != (r.Use == Toolchain) {
			t.Errorf("%s: package %q with use %s: every requirement but the toolchain comes from a Debian package", r.Name, r.Package, r.Use)
		}
		if (r.Kind == Program) == filepath.IsAbs(r.Name) {
			t.Errorf("%s: a program is named as on the PATH, a file or dir by its absolute path", r.Name)
		}
	}
}

// TestDepsScriptInstallsExactlyTheDeclaredPackages keeps scripts/deps.sh and
// the list one: a package the code needs that the script does not install
// fails here, and so does a package installed for nothing.
func TestDepsScriptInstallsExactlyTheDeclaredPackages(t *testing.T) {
	out, err := exec.Command(Need(t, "bash"), filepath.Join(repoRoot(), "scripts", "deps.sh"), "--list").Output()
	if err != nil {
		t.Fatalf("deps.sh --list: %v", err)
	}
	script := strings.Fields(string(out))
	if diff := ListDiff(script); diff != "" {
		t.Errorf("scripts/deps.sh and internal/hostreq disagree: %s", diff)
	}
	if !slices.Equal(script, Packages()) {
		t.Errorf("scripts/deps.sh lists %q, internal/hostreq declares %q: keep them in the same order", script, Packages())
	}
}

func TestListDiffNamesWhatIsMissingAndWhatIsExtra(t *testing.T) {
	pkgs := Packages()
	script := append(slices.Clone(pkgs[1:]), "cowsay")
	diff := ListDiff(script)
	for _, want := range []string{"does not install " + pkgs[0] + " (", "installs cowsay, which no requirement declares"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff %q lacks %q", diff, want)
		}
	}
	if ListDiff(pkgs) != "" {
		t.Errorf("the declared list differs from itself: %s", ListDiff(pkgs))
	}
}

func TestLookupFindsDeclaredRequirementsAndRefusesOthers(t *testing.T) {
	if path, err := Lookup("sh"); err != nil || !filepath.IsAbs(path) {
		t.Errorf("Lookup(sh) = %q, %v", path, err)
	}
	_, err := Lookup("cowsay")
	var undeclared *UndeclaredError
	if !errors.As(err, &undeclared) || !strings.Contains(err.Error(), "internal/hostreq") {
		t.Errorf("Lookup(cowsay) = %v, want an undeclared requirement", err)
	}
}

func TestAMissingRequirementNamesTheFeatureAndThePackage(t *testing.T) {
	for _, tc := range []struct {
		r    Requirement
		want string
	}{
		{Requirement{"no-such-tool", Program, "no-such-pkg", "frobbing", Product},
			"no-such-tool is not installed: frobbing needs it; install it with apt-get install no-such-pkg (make deps does)"},
		{Requirement{"/no/such/firmware.json", File, "ovmf", "UEFI guests", Product},
			"/no/such/firmware.json is missing (file): UEFI guests needs it; install it with apt-get install ovmf (make deps does)"},
		{Requirement{"/", File, "base-files", "roots", Product}, // a dir where a file is wanted
			"/ is missing (file): roots needs it; install it with apt-get install base-files (make deps does)"},
		{Requirement{"no-such-peer", Program, "peerpkg", "bench's peer", Peer},
			"no-such-peer is not installed: bench's peer needs it; install it with apt-get install peerpkg if you want it compared"},
	} {
		_, err := locate(tc.r)
		if !errors.Is(err, ErrMissing) || err.Error() != tc.want {
			t.Errorf("locate(%s) = %v, want %q", tc.r.Name, err, tc.want)
		}
	}
}

func TestMissingAndInstallLine(t *testing.T) {
	statuses := []Status{
		{Requirement: Requirement{"a", Program, "pa", "f", Product}},
		{Requirement: Requirement{"b", Program, "pa", "f", Product}},
		{Requirement: Requirement{"c", Program, "pc", "f", Tests}},
		{Requirement: Requirement{"d", Program, "pd", "f", Product}, Present: true},
		{Requirement: Requirement{"e", Program, "pe", "f", Peer}},
	}
	missing := Missing(statuses)
	if len(missing) != 4 {
		t.Fatalf("missing %+v, want a, b, c and e (make deps installs peers too)", missing)
	}
	if got := InstallLine(missing); got != "apt-get install pa pc pe" {
		t.Errorf("InstallLine = %q", got)
	}
	if got := InstallLine(nil); got != "" {
		t.Errorf("InstallLine(nil) = %q", got)
	}
}
