package ociimage

import (
	"fmt"
	"slices"
	"strings"
)

// defaultPath is the PATH Docker and containerd give a container whose image
// sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Process returns what a container of the image runs: args are Entrypoint
// followed by Cmd (Cmd alone when there is no Entrypoint); env is the
// image's Env with a default PATH when it sets none; cwd is WorkingDir, "/"
// by default.
//
// user is the image's USER as written ("", "0", "root", "1000:1000",
// "app"). polyvisor runs the process as root inside the container's user
// namespace for now, so the caller must refuse, map or at least report
// anything but "", "0", "0:0" and "root".
func (im *Image) Process() (args, env []string, cwd, user string, err error) {
	c := im.Config
	args = append(slices.Clone(c.Entrypoint), c.Cmd...)
	if len(args) == 0 {
		return nil, nil, "", "", fmt.Errorf("image %s sets neither Entrypoint nor Cmd; give the command to run", im.source)
	}
	env = slices.Clone(c.Env)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		env = append(env, defaultPath)
	}
	cwd = c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	return args, env, cwd, c.User, nil
}
