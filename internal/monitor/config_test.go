package monitor

import (
	"errors"
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
