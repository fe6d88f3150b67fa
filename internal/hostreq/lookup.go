package hostreq

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// ErrMissing is matched (errors.Is) by every MissingError.
var ErrMissing = errors.New("host requirement missing")

// MissingError says that a declared requirement is not on this host, what it
// disables and how to install it.
type MissingError struct {
	Requirement Requirement
}

func (e *MissingError) Error() string {
	r := e.Requirement
	what := r.Name + " is not installed"
	if r.Kind != Program {
		what = fmt.Sprintf("%s is missing (%s)", r.Name, r.Kind)
	}
	switch r.Use {
	case Peer:
		return fmt.Sprintf("%s: %s needs it; install it with apt-get install %s if you want it compared", what, r.Feature, r.Package)
	case Toolchain:
		return fmt.Sprintf("%s: %s needs it on the PATH (the Go toolchain of go.mod's version; node and npm for the web console)", what, r.Feature)
	}
	return fmt.Sprintf("%s: %s needs it; install it with apt-get install %s (make deps does)", what, r.Feature, r.Package)
}

// Is makes errors.Is(err, ErrMissing) hold.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// UndeclaredError is the answer for a name that is not in the list: code and
// tests may only look up what make deps is known to install.
type UndeclaredError struct{ Name string }

func (e *UndeclaredError) Error() string {
	return fmt.Sprintf("host requirement %q is not declared: add it, with its Debian package, to internal/hostreq and scripts/deps.sh", e.Name)
}

// sbinDirs are searched after the PATH: root's tools (runc, mkfs.fat) live
// there, and a PATH set for a plain user may lack them.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// Lookup returns where the declared requirement name is on this host: a
// program's path, or the file or directory itself. It fails with a
// *MissingError when it is absent and an *UndeclaredError when name is not in
// the list.
func Lookup(name string) (string, error) {
	r, ok := Find(name)
	if !ok {
		return "", &UndeclaredError{Name: name}
	}
	return locate(r)
}

// Own returns where one of polyvisor's own binaries (polyvisord,
// polyvisor-monitor) is: beside this process's executable, where make
// build and an install put them side by side, then on $PATH; "" when
// neither has it. They are no host requirement: the project builds them.
func Own(name string) string {
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(beside); err == nil {
			return beside
		}
	}
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	return ""
}

func locate(r Requirement) (string, error) {
	missing := &MissingError{Requirement: r}
	switch r.Kind {
	case Program:
		if path, err := exec.LookPath(r.Name); err == nil {
			return path, nil
		}
		for _, dir := range sbinDirs {
			path := filepath.Join(dir, r.Name)
			if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
				return path, nil
			}
		}
		return "", missing
	case File, Dir:
		st, err := os.Stat(r.Name)
		if err != nil || st.IsDir() != (r.Kind == Dir) {
			return "", missing
		}
		return r.Name, nil
	}
	return "", fmt.Errorf("host requirement %s: unknown kind %q", r.Name, r.Kind)
}

// Status is a requirement and whether this host has it.
type Status struct {
	Requirement
	Path    string `json:"path,omitempty"` // where it was found
	Present bool   `json:"present"`
}

// Check looks up every declared requirement.
func Check() []Status {
	all := All()
	out := make([]Status, 0, len(all))
	for _, r := range all {
		path, err := locate(r)
		out = append(out, Status{Requirement: r, Path: path, Present: err == nil})
	}
	return out
}

// Missing returns the statuses of requirements make deps installs that this
// host lacks.
func Missing(statuses []Status) []Status {
	var out []Status
	for _, s := range statuses {
		if !s.Present && s.Installed() {
			out = append(out, s)
		}
	}
	return out
}

// InstallLine is the apt-get command that installs the packages of missing.
func InstallLine(missing []Status) string {
	var pkgs []string
	for _, s := range missing {
		if s.Package != "" && !slices.Contains(pkgs, s.Package) {
			pkgs = append(pkgs, s.Package)
		}
	}
	if len(pkgs) == 0 {
		return ""
	}
	return "apt-get install " + strings.Join(pkgs, " ")
}

// TB is the part of testing.TB that Need uses; this package does not import
// testing.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Need returns where the declared requirement name is, or fails t with the
// requirement's message: a missing package fails a test, it never skips it,
// and a test cannot look up a tool the list does not declare.
func Need(t TB, name string) string {
	t.Helper()
	path, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}
