package monitor

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := Config{ID: "web-1.a_b+c", Bundle: "/b", Runc: "runc", RuncRoot: "/r", Dir: "/d", Log: "/l", LogMax: 1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"empty id":        func(c *Config) { c.ID = "" },
		"id with slash":   func(c *Config) { c.ID = "../x" },
		"id dot-dot":      func(c *Config) { c.ID = ".." },
		"relative bundle": func(c *Config) { c.Bundle = "bundle" },
		"relative root":   func(c *Config) { c.RuncRoot = "root" },
		"no runc":         func(c *Config) { c.Runc = "" },
		"zero log max":    func(c *Config) { c.LogMax = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestConfigValidateCgroup(t *testing.T) {
	vm := Config{ID: "vm", Dir: "/d", Log: "/l", LogMax: 1, Command: []string{"qemu"}, Cgroup: "/polyvisor/vm"}
	if err := vm.Validate(); err != nil {
		t.Fatal(err)
	}
	relative := vm
	relative.Cgroup = "polyvisor/vm"
	if err := relative.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--cgroup") {
		t.Errorf("a relative cgroup: got %v, want ErrInvalid naming --cgroup", err)
	}
	container := Config{ID: "c", Bundle: "/b", Runc: "runc", RuncRoot: "/r", Dir: "/d", Log: "/l", LogMax: 1, Cgroup: "/polyvisor/c"}
	if err := container.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--cgroup") {
		t.Errorf("a cgroup without a command: got %v, want ErrInvalid naming --cgroup", err)
	}
}
