package fake

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/driver"
)

// sh runs a script the way a guest's shell would, against the guest's
// files in memory: commands separated by ";" or "&&" (which stops at the
// first failure), each one of echo [> PATH], cat PATH, sync, true, false,
// exit N, and the pipeline "df -Pk / | tail -n 1" (the root disk's size).
// That is what conformance scripts use; anything else fails with 127.
// st's host lock is held.
func (st *state) sh(script string, stdio driver.Stdio) int {
	code := 0
	for _, step := range splitScript(script) {
		if step.andThen && code != 0 {
			continue
		}
		var exit bool
		code, exit = st.command(strings.TrimSpace(step.text), stdio)
		if exit {
			return code
		}
	}
	return code
}

// scriptStep is one command of a script, and whether it runs only after
// the previous one succeeded.
type scriptStep struct {
	text    string
	andThen bool
}

func splitScript(script string) []scriptStep {
	var steps []scriptStep
	for _, seq := range strings.Split(script, ";") {
		for i, part := range strings.Split(seq, "&&") {
			steps = append(steps, scriptStep{text: part, andThen: i > 0})
		}
	}
	return steps
}

// command runs one command; exit says the script ends with it.
func (st *state) command(text string, stdio driver.Stdio) (code int, exit bool) {
	if text == "df -Pk / | tail -n 1" {
		kib := int64(st.disks["root"]) / 1024
		fmt.Fprintf(stdio.Stdout, "fake %d 0 %d 0%% /\n", kib, kib)
		return 0, false
	}
	words := strings.Fields(text)
	if len(words) == 0 {
		return 0, false
	}
	switch words[0] {
	case "true", "sync":
		return 0, false
	case "false":
		return 1, false
	case "exit":
		n := 0
		if len(words) > 1 {
			n, _ = strconv.Atoi(words[1])
		}
		return n, true
	case "echo":
		args := words[1:]
		if i := indexOf(args, ">"); i >= 0 && i == len(args)-2 {
			st.files[args[i+1]] = strings.Join(args[:i], " ") + "\n"
			return 0, false
		}
		fmt.Fprintln(stdio.Stdout, strings.Join(args, " "))
		return 0, false
	case "cat":
		if len(words) != 2 {
			break
		}
		text, ok := st.files[words[1]]
		if !ok {
			fmt.Fprintf(stdio.Stderr, "cat: %s: No such file or directory\n", words[1])
			return 1, false
		}
		fmt.Fprint(stdio.Stdout, text)
		return 0, false
	}
	fmt.Fprintf(stdio.Stderr, "fake sh: %s: not a command the fake guest knows\n", text)
	return 127, false
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
