package qmp

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeMessage checks that decodeMessage never panics, that what it
// accepts is well-formed (a reply has a result or an error, never both),
// and that the error text of any QMP error stays on one line.
func FuzzDecodeMessage(f *testing.F) {
	for _, seed := range []string{
		`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}`,
		`{"return": {"status": "running", "singlestep": false, "running": true}, "id": 1}`,
		`{"return": [], "id": 2}`,
		`{"return": "VM status: paused (prelaunch)\r\n", "id": 3}`,
		`{"id": 1, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}`,
		`{"error": {"class": "GenericError", "desc": "line\none"}}`,
		`{"timestamp": {"seconds": 1795677688, "microseconds": 579404}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`,
		`{"event": "X", "timestamp": {"seconds": 9223372036854775807, "microseconds": 9223372036854775807}}`,
		`{"id": 1}`,
		`{"return": null, "id": "x"}`,
		`null`,
		`{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		msg, err := decodeMessage(line)
		if err != nil {
			return
		}
		if msg.kind == kindReply {
			if (msg.result == nil) == (msg.failed == nil) {
				t.Fatalf("reply with result %q and error %v", msg.result, msg.failed)
			}
			if msg.result != nil && !json.Valid(msg.result) {
				t.Fatalf("reply result is not JSON: %q", msg.result)
			}
			if msg.failed != nil && strings.ContainsAny(msg.failed.Error(), "\r\n") {
				t.Fatalf("error text spans lines: %q", msg.failed.Error())
			}
		}
	})
}
