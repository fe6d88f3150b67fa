package vendorhost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		raw, kind, url, password, err string
	}{
		{raw: "vsphere://admin@esx1.example/DC0", kind: KindVSphere, url: "vsphere://admin@esx1.example/DC0"},
		{raw: "vsphere://admin:s3cret@esx1:8443", kind: KindVSphere, url: "vsphere://admin@esx1:8443", password: "s3cret"},
		{raw: "qemu:///system", kind: KindLibvirt, url: "qemu:///system"},
		{raw: "qemu+ssh://root@kvm1/system", kind: KindLibvirt, url: "qemu+ssh://root@kvm1/system"},
		{raw: "qemu+unix:///system?socket=/run/x/libvirt-sock", kind: KindLibvirt, url: "qemu+unix:///system?socket=/run/x/libvirt-sock"},
		{raw: "lxc:///", kind: KindLibvirt, url: "lxc:///"},
		{raw: "xen+tls://xen1/system", kind: KindLibvirt, url: "xen+tls://xen1/system"},
		{raw: "vsphere://esx1", err: "name the user and host"},
		{raw: "vsphere://admin@esx1/DC0/extra", err: "names one datacenter"},
		{raw: "qemu+telnet://h/system", err: `transport "telnet"`},
		{raw: "vbox://host", err: `scheme "vbox"`},
		{raw: "esx1", err: "write vsphere://"},
	} {
		kind, u, password, err := ParseURL(c.raw)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseURL(%q) = %v, want an invalid error saying %q", c.raw, err, c.err)
			}
			continue
		}
		if err != nil || kind != c.kind || u.String() != c.url || password != c.password {
			t.Errorf("ParseURL(%q) = %q, %v, %q, %v; want %q, %q, %q", c.raw, kind, u, password, err, c.kind, c.url, c.password)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"esx1", "kvm-2", "A_b"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "local", "a:b", "-x", "a/b", strings.Repeat("x", 33)} {
		if err := CheckName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckName(%q) = %v, want invalid", bad, err)
		}
	}
}

// The store keeps its entries, passwords included, in a file only root
// reads, refuses a second entry of a name, and says what to do about a
// name it does not hold.
func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.json")
	s := OpenStore(path)
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Fatalf("empty store: %v, %v", list, err)
	}
	e := Entry{Name: "esx1", Kind: KindVSphere, URL: "vsphere://admin@esx1", Password: "s3cret", AddedAt: time.Now().UTC()}
	if err := s.Add(e); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Entry{Name: "kvm1", Kind: KindLibvirt, URL: "qemu:///system"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(e); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second esx1: %v, want a conflict", err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("hosts file: %v, %v; want mode 0600", info.Mode(), err)
	}
	got, err := OpenStore(path).Get("esx1")
	if err != nil || got.Password != "s3cret" || got.URL != e.URL {
		t.Fatalf("Get(esx1) from a new store = %+v, %v", got, err)
	}
	c, err := got.Credentials()
	if err != nil || c.URL.Host != "esx1" || c.Password != "s3cret" {
		t.Fatalf("Credentials = %+v, %v", c, err)
	}
	if list, _ := s.List(); len(list) != 2 || list[0].Name != "esx1" || list[1].Name != "kvm1" {
		t.Fatalf("List = %+v, want esx1 and kvm1", list)
	}
	if err := s.Remove("esx1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("esx1"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "polyvisor host add esx1") {
		t.Fatalf("Get of a removed host: %v", err)
	}
	if err := s.Remove("esx1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove of a removed host: %v", err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "s3cret") {
		t.Fatalf("the removed host's password is still in the file: %s", data)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(); err == nil || !strings.Contains(err.Error(), "remove it to forget every host") {
		t.Fatalf("a damaged file: %v", err)
	}
}
