package peer

import (
	"strings"
	"testing"
)

func TestPrivateCgroupIsPerDir(t *testing.T) {
	a, b := privateCgroup("lxc", "/tmp/a"), privateCgroup("lxc", "/tmp/b")
	if a == b || !strings.HasPrefix(a, "/polyvisor-peer-lxc-") || privateCgroup("lxc", "/tmp/a") != a {
		t.Errorf("privateCgroup: %q and %q", a, b)
	}
}

// The config keeps the guest off the network, in the shared id map, and
// in the manager's cgroup, which LXC takes relative to each hierarchy.
func TestLXCConfig(t *testing.T) {
	l := &LXC{env: Env{RootFS: "/t/rootfs", CPUs: 2, MemoryMiB: 256}, path: "/t/peer/lxc", cgroup: "/polyvisor-peer-lxc-0123abcd"}
	conf := l.config("g1")
	for _, want := range []string{
		"lxc.rootfs.path = overlay:/t/rootfs:/t/peer/lxc/g1/upper\n",
		"lxc.idmap = u 0 1000000 65536\n", "lxc.idmap = g 0 1000000 65536\n",
		"lxc.net.0.type = empty\n",
		"lxc.init.cmd = /sbin/init\n",
		"lxc.cgroup.dir.monitor = polyvisor-peer-lxc-0123abcd/g1.monitor\n",
		"lxc.cgroup.dir.container = polyvisor-peer-lxc-0123abcd/g1.payload\n",
		"lxc.cgroup.dir.monitor.pivot = polyvisor-peer-lxc-0123abcd/pivot\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("the config lacks %q:\n%s", want, conf)
		}
	}
	if !strings.Contains(conf, "268435456") || !strings.Contains(conf, "200000") {
		t.Errorf("the config does not limit memory to 256 MiB and CPU to 2:\n%s", conf)
	}
}
