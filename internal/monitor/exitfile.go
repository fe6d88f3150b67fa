package monitor

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// ExitStatus is the content of RUNDIR/exit.json, written once the guest's
// init has exited:
//
//	{"pid":N,"exitCode":C,"signal":S,"exitedAt":"RFC3339Nano"}
//
// Signal is 0 when init exited by itself; when a signal killed it, Signal is
// its number and ExitCode is 128+Signal, as a shell reports it.
type ExitStatus struct {
	Pid      int       `json:"pid"`
	ExitCode int       `json:"exitCode"`
	Signal   int       `json:"signal"`
	ExitedAt time.Time `json:"exitedAt"`
}

// exitStatusOf converts what wait4 returned for pid.
func exitStatusOf(pid int, ws unix.WaitStatus, at time.Time) ExitStatus {
	s := ExitStatus{Pid: pid, ExitCode: ws.ExitStatus(), ExitedAt: at.UTC()}
	if ws.Signaled() {
		s.Signal = int(ws.Signal())
		s.ExitCode = 128 + s.Signal
	}
	return s
}

// MarshalJSON encodes s as documented on ExitStatus. It is written by hand
// so that the monitor binary does without encoding/json; decoding with
// encoding/json works as usual.
func (s ExitStatus) MarshalJSON() ([]byte, error) {
	b := []byte(`{"pid":`)
	b = strconv.AppendInt(b, int64(s.Pid), 10)
	b = append(b, `,"exitCode":`...)
	b = strconv.AppendInt(b, int64(s.ExitCode), 10)
	b = append(b, `,"signal":`...)
	b = strconv.AppendInt(b, int64(s.Signal), 10)
	b = append(b, `,"exitedAt":"`...)
	b = s.ExitedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...), nil
}

// writeExitFile stores s in dir/exit.json atomically: a reader sees no file
// or the whole of it, even if the host crashes meanwhile.
func writeExitFile(dir string, s ExitStatus) error {
	data, _ := s.MarshalJSON()
	data = append(data, '\n')
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, ExitFileName), data, 0o644); err != nil {
		return fmt.Errorf("write exit status: %w", err)
	}
	return nil
}
