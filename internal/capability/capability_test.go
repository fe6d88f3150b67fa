package capability

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{"default", Default()},
		{"CAP_KILL, net_raw", []string{"CAP_KILL", "CAP_NET_RAW"}},
		{"default,cap_sys_ptrace,-NET_RAW,-CAP_NET_ADMIN", []string{
			"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
			"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_MKNOD",
			"CAP_AUDIT_WRITE", "CAP_SETFCAP",
		}},
		{"", nil},
		{"-CAP_KILL", nil},
	} {
		got, err := Parse("--capabilities", c.text)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.text, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Parse(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

func TestParseRefusesUnknownNames(t *testing.T) {
	for _, text := range []string{"CAP_BOGUS", "default,fly", "--", "CAP_"} {
		_, err := Parse("--capabilities", text)
		if err == nil || !strings.HasPrefix(err.Error(), "--capabilities: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): err = %v, want one line naming --capabilities", text, err)
		}
	}
}

func TestDefaultIsInNumberOrderAndLacksSysAdmin(t *testing.T) {
	d := Default()
	if slices.Contains(d, SysAdmin) {
		t.Error("the default set holds CAP_SYS_ADMIN")
	}
	last := -1
	for _, name := range d {
		i := slices.Index(Names, name)
		if i <= last {
			t.Errorf("%s is unknown or out of order in Default()", name)
		}
		last = i
	}
}
