package qmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestEncodeRequest(t *testing.T) {
	tests := []struct {
		cmd  Command
		want string
	}{
		{qmpCapabilities{}, `{"execute":"qmp_capabilities","id":7}`},
		{QueryStatus{}, `{"execute":"query-status","id":7}`},
		{SystemPowerdown{}, `{"execute":"system_powerdown","id":7}`},
		{Quit{}, `{"execute":"quit","id":7}`},
		{Stop{}, `{"execute":"stop","id":7}`},
		{Cont{}, `{"execute":"cont","id":7}`},
		{SystemReset{}, `{"execute":"system_reset","id":7}`},
		{QueryKVM{}, `{"execute":"query-kvm","id":7}`},
		{QueryCPUsFast{}, `{"execute":"query-cpus-fast","id":7}`},
		{QueryBlock{}, `{"execute":"query-block","id":7}`},
		{QueryVersion{}, `{"execute":"query-version","id":7}`},
		{BlockResize{NodeName: "disk0", Size: 1 << 30}, `{"execute":"block_resize","arguments":{"node-name":"disk0","size":1073741824},"id":7}`},
		{BlockResize{Device: "drive0", Size: 0}, `{"execute":"block_resize","arguments":{"device":"drive0","size":0},"id":7}`},
		{HumanMonitorCommand{CommandLine: "info status"}, `{"execute":"human-monitor-command","arguments":{"command-line":"info status"},"id":7}`},
		{Raw{Name: "query-name"}, `{"execute":"query-name","id":7}`},
		{Raw{Name: "x", Args: map[string]int{"n": 1}}, `{"execute":"x","arguments":{"n":1},"id":7}`},
		{&Cont{}, `{"execute":"cont","id":7}`}, // pointers work too
	}
	for _, tt := range tests {
		name, args := tt.cmd.qmpCommand()
		got, err := encodeRequest(name, args, 7)
		if err != nil {
			t.Errorf("%T: %v", tt.cmd, err)
			continue
		}
		if string(got) != tt.want+"\n" {
			t.Errorf("%T:\n got %s want %s", tt.cmd, got, tt.want)
		}
	}
}

func TestEncodeRequestRefusesUnencodableArguments(t *testing.T) {
	name, args := Raw{Name: "x", Args: map[string]any{"f": func() {}}}.qmpCommand()
	if _, err := encodeRequest(name, args, 1); err == nil {
		t.Fatal("no error for a func argument")
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		line string
		want message
	}{
		{
			`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`,
			message{kind: kindGreeting},
		},
		{
			`{"return": {"status": "prelaunch", "singlestep": false, "running": false}, "id": 3}`,
			message{kind: kindReply, id: 3, idOK: true, result: json.RawMessage(`{"status": "prelaunch", "singlestep": false, "running": false}`)},
		},
		{`{"return": {}, "id": 18446744073709551615}`, message{kind: kindReply, id: 1<<64 - 1, idOK: true, result: json.RawMessage(`{}`)}},
		{`{"return": null, "id": 1}`, message{kind: kindReply, id: 1, idOK: true, result: json.RawMessage(`null`)}},
		{
			`{"id": 4, "error": {"class": "GenericError", "desc": "Cannot find device='nope' nor node-name=''"}}`,
			message{kind: kindReply, id: 4, idOK: true, failed: &Error{Class: "GenericError", Desc: "Cannot find device='nope' nor node-name=''"}},
		},
		// QEMU could not parse the request: the error has no id.
		{`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`, message{kind: kindReply, failed: &Error{Class: "GenericError", Desc: "JSON parse error"}}},
		{`{"return": {}, "id": "mine"}`, message{kind: kindReply, result: json.RawMessage(`{}`)}},
		{`{"return": {}, "id": -1}`, message{kind: kindReply, result: json.RawMessage(`{}`)}},
		{
			`{"timestamp": {"seconds": 1795677688, "microseconds": 577489}, "event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}`,
			message{kind: kindEvent},
		},
		{`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`, message{kind: kindEvent}},
		{`{"event": "STOP", "timestamp": {"seconds": -1, "microseconds": -1}}`, message{kind: kindEvent}},
		{`{"event": "STOP"}`, message{kind: kindEvent}},
		{`{"something-new": 1}`, message{kind: kindUnknown}},
	}
	for _, tt := range tests {
		got, err := decodeMessage([]byte(tt.line))
		if err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if !sameMessage(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.line, got, tt.want)
		}
	}
}

func TestDecodeMessageRefusesWhatIsNotQMP(t *testing.T) {
	for _, line := range []string{
		``,
		`not json`,
		`[1, 2]`,
		`{"return": {}, "id": 1`,
		`{"return": {}, "error": {"class": "GenericError", "desc": "x"}, "id": 1}`,
		`{"id": 5}`,
		`{"error": null, "id": 5}`,
		`{"event": 5}`,
	} {
		if _, err := decodeMessage([]byte(line)); !errors.Is(err, errBadMessage) {
			t.Errorf("%q: got %v, want errBadMessage", line, err)
		}
	}
}

func sameMessage(a, b message) bool {
	return a.kind == b.kind && a.id == b.id && a.idOK == b.idOK &&
		bytes.Equal(a.result, b.result) &&
		(a.failed == nil) == (b.failed == nil) && (a.failed == nil || *a.failed == *b.failed)
}

func TestErrorIsOneLine(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Class: "GenericError", Desc: "Cannot find device='nope' nor node-name=''"}, "GenericError: Cannot find device='nope' nor node-name=''"},
		{Error{Class: "GenericError", Desc: "first\nsecond\r\n"}, "GenericError: first second"},
		{Error{Desc: "no class"}, "no class"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestVersionNumberString(t *testing.T) {
	if got := (VersionNumber{Major: 7, Minor: 2, Micro: 22}).String(); got != "7.2.22" {
		t.Errorf("got %q", got)
	}
}
