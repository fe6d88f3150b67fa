package peer

import (
	"strconv"
	"strings"
)

// lastLine is a tool's own last word in its complaint: its last "Error: "
// line where it has one (incus, podman and virsh follow it with a hint
// or usage), else its last non-empty line, and of a logrus line as runc
// writes them (time="…" level=error msg="…") only its message.
func lastLine(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Error: ") {
			return strings.TrimSpace(lines[i])
		}
	}
	line := strings.TrimSpace(lines[len(lines)-1])
	_, msg, ok := strings.Cut(line, " msg=")
	if !strings.HasPrefix(line, "time=") || !ok {
		return line
	}
	if unquoted, err := strconv.QuotedPrefix(msg); err == nil {
		if s, err := strconv.Unquote(unquoted); err == nil {
			return s
		}
	}
	return msg
}
