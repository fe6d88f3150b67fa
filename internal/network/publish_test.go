package network

import (
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	for text, want := range map[string]string{
		"8080:80":               "8080:80/tcp",
		"127.0.0.1:5353:53/udp": "127.0.0.1:5353:53/udp",
		"10.0.0.1:443:8443/tcp": "10.0.0.1:443:8443/tcp",
	} {
		f, err := ParsePublish(text)
		if err != nil || f.String() != want {
			t.Errorf("%s: %v, %v; want %s", text, f, err, want)
		}
	}
	for text, why := range map[string]string{
		"80":           "two ports",
		"1:2:3:4":      "two ports",
		"0:80":         "from 1 to 65535",
		"70000:80":     "from 1 to 65535",
		"8080:80/sctp": "tcp or udp",
		"::1:8080:80":  "two ports",
		"host:8080:80": "IPv4 address",
		"8080:http":    "from 1 to 65535",
	} {
		if _, err := ParsePublish(text); err == nil || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "publish") {
			t.Errorf("%s: err = %v, want one saying %q", text, err, why)
		}
	}
	a, _ := ParsePublish("8080:80")
	b, _ := ParsePublish("127.0.0.1:8080:81")
	c, _ := ParsePublish("8080:80/udp")
	if !a.overlaps(b) || a.overlaps(c) {
		t.Errorf("overlaps: any address with 127.0.0.1 %v, tcp with udp %v", a.overlaps(b), a.overlaps(c))
	}
}
