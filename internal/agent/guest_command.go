package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// defaultPath is the PATH of every command unless the request sets one:
// the agent itself may have been started by init with none at all.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// errCommandNotFound is returned when a command is not in its PATH.
var errCommandNotFound = errors.New("command not found")

// command builds the exec.Cmd for req. When the command cannot run, it
// also returns the exit code a shell would give: 127 when the program is
// not found, 126 otherwise.
func command(req ExecRequest) (*exec.Cmd, int, error) {
	env := []string{"PATH=" + defaultPath, "HOME=/root"}
	if req.TTY {
		env = append(env, "TERM=xterm")
	}
	env = append(env, req.Env...)
	dir := req.Cwd
	if dir == "" {
		dir = "/"
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, 126, fmt.Errorf("working directory: %w", err)
	} else if !fi.IsDir() {
		return nil, 126, fmt.Errorf("working directory %s: not a directory", dir)
	}
	path, err := lookPath(req.Command[0], lastValue(env, "PATH"), dir)
	if err != nil {
		return nil, 127, err
	}
	// exec.Command would look the program up in the agent's own PATH.
	cmd := &exec.Cmd{Path: path, Args: req.Command, Env: env, Dir: dir}
	return cmd, 0, nil
}

// lookPath finds the program name as a shell would with PATH set to
// pathList: a name with a slash is taken as it is (relative to dir),
// another is searched for in each directory of the list.
func lookPath(name, pathList, dir string) (string, error) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s: %w", name, errCommandNotFound)
		}
		return path, nil // if it is not executable, starting it says so
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		path := filepath.Join(d, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s: %w (PATH=%s)", name, errCommandNotFound, pathList)
}

// lastValue returns the value of key in env, the last one when it is set
// several times, as exec.Cmd uses it.
func lastValue(env []string, key string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value = v
		}
	}
	return value
}
