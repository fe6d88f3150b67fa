package idmap

import "testing"

func TestMapToHostAndBack(t *testing.T) {
	m := Default()
	for _, id := range []uint32{0, 1, 65534, 65535} {
		host, err := m.ToHost(id)
		if err != nil {
			t.Fatalf("ToHost(%d): %v", id, err)
		}
		if host != HostBase+id {
			t.Fatalf("ToHost(%d) = %d, want %d", id, host, HostBase+id)
		}
		back, err := m.ToContainer(host)
		if err != nil || back != id {
			t.Fatalf("ToContainer(%d) = %d, %v; want %d", host, back, err, id)
		}
	}
}

func TestMapRejectsIDsOutsideRange(t *testing.T) {
	m := Default()
	if _, err := m.ToHost(Size); err == nil {
		t.Error("ToHost(Size) succeeded")
	}
	for _, id := range []uint32{0, HostBase - 1, HostBase + Size} {
		if _, err := m.ToContainer(id); err == nil {
			t.Errorf("ToContainer(%d) succeeded", id)
		}
	}
	if _, err := (Map{HostBase: 1<<32 - 10, Size: 100}).ToHost(50); err == nil {
		t.Error("ToHost past 2^32-1 succeeded")
	}
}

func TestShiftUpAndDown(t *testing.T) {
	m := Default()
	uid, gid, err := ShiftUp(m)(0, 65534)
	if err != nil || uid != HostBase || gid != HostBase+65534 {
		t.Fatalf("ShiftUp(0, 65534) = %d, %d, %v", uid, gid, err)
	}
	uid, gid, err = ShiftDown(m)(uid, gid)
	if err != nil || uid != 0 || gid != 65534 {
		t.Fatalf("ShiftDown back = %d, %d, %v", uid, gid, err)
	}
	if _, _, err := ShiftUp(m)(0, 70000); err == nil {
		t.Fatal("ShiftUp of gid 70000 succeeded")
	}
}
