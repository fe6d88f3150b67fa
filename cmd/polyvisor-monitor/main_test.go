package main

import (
	"errors"
	"testing"

	"github.com/polyvisor/polyvisor/internal/monitor"
)

// TestArgsRoundTrip checks that the command line the daemon builds with
// monitor.Config.Args parses back to the same Config.
func TestArgsRoundTrip(t *testing.T) {
	want := monitor.Config{
		ID: "web-1", Bundle: "/b", Runc: "/usr/sbin/runc", RuncRoot: "/run/r",
		Dir: "/run/polyvisor/web-1", Log: "/var/log/web-1.log", LogMax: 4096,
	}
	got, err := parseArgs(want.Args())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseArgsDefaultsAndErrors(t *testing.T) {
	cfg, err := parseArgs([]string{"--id", "a", "--bundle", "/b", "--runc-root", "/r", "--dir", "/d", "--log", "/l"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogMax != monitor.DefaultLogMax || cfg.Runc != "runc" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if _, err := parseArgs([]string{"--id", "a"}); !errors.Is(err, monitor.ErrInvalid) {
		t.Fatalf("missing flags: got %v, want ErrInvalid", err)
	}
	if _, err := parseArgs([]string{"--nope"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
}
