package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// virshMemo keeps BenchmarkVMBootVirsh's peer and samples across the
// testing package's calls.
type virshMemo struct {
	virsh                   *peer.Virsh
	argv                    []string
	base                    string
	create, start, stop, rm samples
	raw                     samples
}

// vmEnvOf is the VMEnv of a polyvisor VM's QEMU argv.
func vmEnvOf(argv []string, base, accel string) *peer.VMEnv {
	value := func(flag string) string {
		if i := slices.Index(argv, flag); i >= 0 && i+1 < len(argv) {
			return argv[i+1]
		}
		return ""
	}
	return &peer.VMEnv{Argv: argv, Base: base, Kernel: value("-kernel"), Initrd: value("-initrd"), Append: value("-append"), Accel: accel, AgentPort: "org.polyvisor.agent"}
}

// BenchmarkVMBootVirsh compares boot-to-userspace of polyvisor's busybox
// microVM started by libvirt (the virsh peer: `virsh start` of a defined
// domain, until the agent answers) with the very same QEMU argv run by
// hand, alternating which goes first. It also reports the virsh peer's
// other steps: define (with the overlay), graceful stop, undefine.
func BenchmarkVMBootVirsh(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "vmvirsh")
	m, _ := f.memo.(*virshMemo)
	if m == nil {
		f.buildVMTemplates(b, "amd64")
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		if _, err := f.launchVM(ctx, "virsh-argv", "amd64"); err != nil {
			b.Fatal(err)
		}
		g, err := f.client.Guest(ctx, "virsh-argv")
		if err != nil {
			b.Fatal(err)
		}
		m = &virshMemo{}
		if m.argv, err = peer.Cmdline(g.PID); err != nil {
			b.Fatal(err)
		}
		if m.base, err = peer.BackingOf(peer.RootDisk(m.argv)); err != nil {
			b.Fatal(err)
		}
		if err := testenv.DeleteGuest(ctx, f.client, "virsh-argv"); err != nil {
			b.Fatal(err)
		}
		m.virsh = peer.NewVirsh()
		f.onClose(func() {
			if err := m.virsh.Close(context.Background()); err != nil {
				fmt.Println("bench: virsh peer close:", err)
			}
		})
		if err := m.virsh.Setup(ctx, peer.Env{Dir: filepath.Join(f.dir, "virsh"), VM: vmEnvOf(m.argv, m.base, g.Accel)}); err != nil {
			b.Fatal(err)
		}
		f.memo = m
	}
	bootVirsh := func(ctx context.Context, id string) error {
		steps := []struct {
			s  *samples
			do func(context.Context, string) error
		}{{&m.create, m.virsh.Create}, {&m.start, m.virsh.Start}, {&m.stop, m.virsh.Stop}, {&m.rm, m.virsh.Delete}}
		for _, step := range steps {
			began := time.Now()
			if err := step.do(ctx, id); err != nil {
				return err
			}
			*step.s = append(*step.s, time.Since(began))
		}
		return nil
	}
	for i := range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), 2*opTimeout)
		n := len(m.raw)
		var err error
		if n%2 == 0 {
			err = bootVirsh(ctx, fmt.Sprintf("v%d", n))
		}
		if err == nil {
			var took time.Duration
			if took, err = bootRaw(ctx, f, m.argv, m.base, i); err == nil {
				m.raw = append(m.raw, took)
			}
		}
		if err == nil && n%2 == 1 {
			err = bootVirsh(ctx, fmt.Sprintf("v%d", n))
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(m.start.median(), "virsh-start-ms/op")
	b.ReportMetric(m.raw.median(), "qemu-ms/op")
	b.ReportMetric(m.start.median()/m.raw.median(), "ratio")
	b.ReportMetric(m.create.median(), "virsh-define-ms")
	b.ReportMetric(m.stop.median(), "virsh-stop-ms")
	b.ReportMetric(m.rm.median(), "virsh-undefine-ms")
	b.Logf("n=%d; virsh start until the agent answers ms: min %.0f p50 %.0f max %.0f; qemu by hand ms: min %.0f p50 %.0f max %.0f; ratio %.2f; define p50 %.0f ms, graceful stop p50 %.0f ms, undefine p50 %.0f ms",
		len(m.raw), m.start.percentile(0), m.start.median(), m.start.percentile(100),
		m.raw.percentile(0), m.raw.median(), m.raw.percentile(100), m.start.median()/m.raw.median(),
		m.create.median(), m.stop.median(), m.rm.median())
}
