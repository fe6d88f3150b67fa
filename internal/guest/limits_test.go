package guest

import "testing"

func TestHostMemory(t *testing.T) {
	if m, err := HostMemory(); err != nil || m < MinMemory {
		t.Errorf("HostMemory = %s, %v", m, err)
	}
}
