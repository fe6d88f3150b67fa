package main

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// TestArgsRoundTrip checks that the command line the daemon builds with
// monitor.Config.Args parses back to the same Config.
func TestArgsRoundTrip(t *testing.T) {
	want := monitor.Config{
		ID: "web-1", Bundle: "/b", Runc: "/usr/sbin/runc", RuncRoot: "/run/r",
		Dir: "/run/polyvisor/web-1", Log: "/var/log/web-1.log", LogMax: 4096,
	}
	got, sup, err := parseArgs(want.Args())
	if err != nil || sup != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	vm := monitor.Config{
		ID: "vm1", Dir: "/run/polyvisor/vm1", Log: "/var/log/vm1.log", LogMax: 4096, Runc: "runc",
		ReadySocket: "/run/polyvisor/vm1/qmp.sock", Cgroup: "/polyvisor/vm1",
		Command: []string{"qemu-system-x86_64", "-M", "microvm", "--", "x"},
	}
	if got, _, err = parseArgs(vm.Args()); err != nil || !reflect.DeepEqual(got, vm) {
		t.Fatalf("command form: got %+v, %v; want %+v", got, err, vm)
	}
	if _, _, err := parseArgs([]string{"--id", "a", "--dir", "/d", "--log", "/l", "stray"}); err == nil {
		t.Fatal("a stray argument was taken for a command")
	}
}

func TestParseArgsDefaultsAndErrors(t *testing.T) {
	cfg, _, err := parseArgs([]string{"--id", "a", "--bundle", "/b", "--runc-root", "/r", "--dir", "/d", "--log", "/l"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogMax != monitor.DefaultLogMax || cfg.Runc != "runc" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if _, _, err := parseArgs([]string{"--id", "a"}); !errors.Is(err, monitor.ErrInvalid) {
		t.Fatalf("missing flags: got %v, want ErrInvalid", err)
	}
	if _, _, err := parseArgs([]string{"--nope"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestParseSupervisorArgs(t *testing.T) {
	_, sup, err := parseArgs([]string{"--supervise", "/run/pv/.supervisor", "--linger", "3s"})
	if err != nil || sup == nil || sup.Dir != "/run/pv/.supervisor" || sup.Linger != 3*time.Second {
		t.Fatalf("got %+v, %v", sup, err)
	}
	if _, sup, err = parseArgs([]string{"--supervise", "/d"}); err != nil || sup.Linger != monitor.DefaultLinger {
		t.Fatalf("default linger: got %+v, %v", sup, err)
	}
	if _, _, err := parseArgs([]string{"--supervise", "/d", "stray"}); err == nil {
		t.Fatal("a stray argument after --supervise was accepted")
	}
}
