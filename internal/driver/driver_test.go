package driver_test

import (
	"errors"
	"testing"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/container"
)

func TestRegistryFindsDriversByTypeAndClass(t *testing.T) {
	reg := driver.NewRegistry()
	reg.Register("container", container.New(container.Options{}))
	if d, err := reg.ForType("container"); err != nil || d.Class() != "container" {
		t.Errorf("ForType(container) = %v, %v", d, err)
	}
	if _, err := reg.Get("container"); err != nil {
		t.Error(err)
	}
	if _, err := reg.ForType("vm"); !errors.Is(err, api.ErrNotAvailable) {
		t.Errorf("ForType(vm) = %v, want ErrNotAvailable", err)
	}
	if _, err := reg.Get("bochs"); !errors.Is(err, api.ErrNotAvailable) {
		t.Errorf("Get(bochs) = %v, want ErrNotAvailable", err)
	}
	if all := reg.All(); len(all) != 1 || reg.Types()[0] != "container" {
		t.Errorf("All() = %v, Types() = %v", all, reg.Types())
	}
}
