package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// listed is a listing with every kind of field filled in, including
// characters that JSON escapes, as the daemon would answer it.
func listed() []api.Guest {
	at := time.Date(2026, 12, 5, 18, 0, 0, 123456789, time.UTC)
	return []api.Guest{
		{
			Name: "web", Type: "container", Class: "container", Driver: "container", State: api.StateRunning, Template: "busybox", Arch: "amd64",
			CPUs: 2, Memory: 256 << 20, Processes: 1024, Rootfs: "overlay", PID: 42, MonitorPID: 41,
			IPv4: []string{"10.0.3.2", "10.0.4.2"}, Networks: []string{"polyvisor0", "lab"}, Publish: []string{"8080:80/tcp"},
			Disks:       []api.Disk{{Name: "root", Kind: guest.DiskOverlayImage, Size: 10 << 30, Allocated: 4 << 20, Used: 32 << 10, Path: "/var/lib/polyvisor/guests/web/disks/layer.img"}},
			IDMap:       &api.IDMap{Kind: "isolated", HostUID: 1065536, HostGID: 1065536, Size: 65536},
			Confinement: &api.Confinement{Capabilities: []string{"CAP_CHOWN", "CAP_KILL"}, Seccomp: "moby-default", NoNewPrivileges: true, Namespaces: []string{"pid", "user"}},
			CreatedAt:   at, StartedAt: at.Add(time.Minute), Pending: []string{"memory"},
		},
		{
			Name: "vm", Type: "vm", Class: "emulation", Driver: "qemu", Accel: "tcg", State: api.StateStopped, Arch: "amd64",
			CPUs: 1, Memory: 1 << 30, IPv4: []string{}, Networks: []string{},
			Disks:     []api.Disk{{Name: "root", Kind: "qcow2", Size: 8 << 30, Allocated: 200 << 20, Path: "/p/<&>\u2028é"}},
			CreatedAt: at, LastExit: &api.Exit{Code: 1},
		},
		{Name: "bad", State: "broken", IPv4: []string{}, Networks: []string{}, Error: "guest.yaml: line 3: \"cpus\" <wrong> & \t tab"},
	}
}

// TestListJSONAsPrintedBefore: indenting the daemon's answer prints
// exactly what decoding it and encoding it again printed.
func TestListJSONAsPrintedBefore(t *testing.T) {
	for _, guests := range [][]api.Guest{listed(), {}} {
		var answer bytes.Buffer // as the daemon's writeJSON sends it
		if err := json.NewEncoder(&answer).Encode(guests); err != nil {
			t.Fatal(err)
		}
		var decoded []api.Guest
		if err := json.Unmarshal(answer.Bytes(), &decoded); err != nil {
			t.Fatal(err)
		}
		var before, after bytes.Buffer
		if err := printStructured(&before, "json", decoded); err != nil {
			t.Fatal(err)
		}
		if err := printIndented(&after, answer.Bytes()); err != nil {
			t.Fatal(err)
		}
		if before.String() != after.String() {
			t.Fatalf("list --format json changed:\nbefore:\n%s\nafter:\n%s", before.String(), after.String())
		}
	}
	if err := printIndented(&bytes.Buffer{}, []byte(`[{"name":`)); err == nil {
		t.Fatal("a cut answer was printed without an error")
	}
}

// TestListTable: the table shows each guest's columns, the disk quota as
// used/size, a dash for no address, from the summaries as they travel.
func TestListTable(t *testing.T) {
	var summaries []api.GuestSummary
	for _, g := range listed() {
		summaries = append(summaries, g.Summary())
	}
	answer, err := json.Marshal(summaries)
	if err != nil {
		t.Fatal(err)
	}
	var rows []api.GuestSummary
	if err := json.Unmarshal(answer, &rows); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printGuestTable(&out, rows, false); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"NAME  TYPE       CLASS      STATE    IPV4               CPUS  MEMORY  DISK         ARCH",
		"web   container  container  RUNNING  10.0.3.2,10.0.4.2  2     256MiB  32KiB/10GiB  amd64",
		"vm    vm         emulation  STOPPED  -                  1     1GiB    8GiB         amd64",
		"bad                         BROKEN   -                  0     0B      -            ",
		"",
	}, "\n")
	if out.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out.String(), want)
	}
}
