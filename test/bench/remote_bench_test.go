package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/remotes"
	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// remoteGuests is the size of the remote listing benchmark.
const remoteGuests = 500

// remoteSetup is what BenchmarkRemoteAPI makes once: a client trusted
// over HTTPS and the CLI's config naming the daemon as remote "far".
type remoteSetup struct {
	remote    *client.Client
	configDir string
}

// BenchmarkRemoteAPI sets the API over HTTPS (TLS 1.3, client
// certificates, the daemon's --listen on loopback) beside the same API
// on the unix socket, on one daemon holding 500 stopped guests and one
// running: each iteration lists the guests through the Go client over
// each (a kept-alive connection, as a long-lived program holds), runs
// `exec web -- echo` over each (a connection of its own per session,
// a TLS handshake included) and runs `polyvisor list` and
// `polyvisor list far:` (a process per command, as a user runs them),
// in a rotating order. Ratios are HTTPS over unix, medians of the run.
func BenchmarkRemoteAPI(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "remote", "--listen", "127.0.0.1:0")
	if f.memo == nil {
		f.memo = setUpRemote(b, f)
	}
	setup := f.memo.(remoteSetup)
	b.Setenv(remotes.DirEnv, setup.configDir)

	var listUnix, listTLS, execUnix, execTLS, cliUnix, cliTLS samples
	listWith := func(c *client.Client, took *samples) func() error {
		return func() error {
			return appendTook(took, func() error {
				ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
				defer cancel()
				guests, err := c.Guests(ctx)
				if err == nil && len(guests) != remoteGuests+1 {
					err = fmt.Errorf("listed %d guests, want %d", len(guests), remoteGuests+1)
				}
				return err
			})
		}
	}
	execWith := func(c *client.Client, took *samples) func() error {
		return func() error { return appendTook(took, func() error { return execEcho(b.Context(), c) }) }
	}
	cliWith := func(target string, took *samples) func() error {
		return func() error {
			args := []string{"list", "--format", "json"}
			if target != "" {
				args = append(args, target)
			}
			return appendTook(took, func() error {
				out, errOut, code := f.daemon.Run(args...)
				if code != 0 {
					return fmt.Errorf("polyvisor %s: exit %d: %s", strings.Join(args, " "), code, errOut)
				}
				if n := strings.Count(out, `"name":`); n < remoteGuests {
					return fmt.Errorf("polyvisor %s printed %d guests", strings.Join(args, " "), n)
				}
				return nil
			})
		}
	}
	runs := []func() error{
		listWith(f.client, &listUnix), listWith(setup.remote, &listTLS),
		execWith(f.client, &execUnix), execWith(setup.remote, &execTLS),
		cliWith("", &cliUnix), cliWith("far:", &cliTLS),
	}
	b.ResetTimer()
	for i := range b.N {
		for k := range runs {
			if err := runs[(i+k)%len(runs)](); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(listUnix.median(), "list-unix-p50-ms")
	b.ReportMetric(listTLS.median(), "list-tls-p50-ms")
	b.ReportMetric(listTLS.median()/listUnix.median(), "list-tls-vs-unix")
	b.ReportMetric(execUnix.median(), "exec-unix-p50-ms")
	b.ReportMetric(execTLS.median(), "exec-tls-p50-ms")
	b.ReportMetric(execTLS.median()/execUnix.median(), "exec-tls-vs-unix")
	b.ReportMetric(cliTLS.median()/cliUnix.median(), "cli-list-tls-vs-unix")
	b.Logf("n=%d ms p50/p95: list %d guests unix %.1f/%.1f, https %.1f/%.1f; exec echo unix %.1f/%.1f, https %.1f/%.1f; polyvisor list unix %.1f/%.1f, https %.1f/%.1f",
		len(listUnix), remoteGuests+1, listUnix.median(), listUnix.percentile(95), listTLS.median(), listTLS.percentile(95),
		execUnix.median(), execUnix.percentile(95), execTLS.median(), execTLS.percentile(95),
		cliUnix.median(), cliUnix.percentile(95), cliTLS.median(), cliTLS.percentile(95))
}

// setUpRemote makes the benchmark's guests, trusts a client by a token as
// `remote add` does, and writes the CLI's config for it.
func setUpRemote(b *testing.B, f *fixture) remoteSetup {
	b.Helper()
	ctx := b.Context()
	names := guestNames("remote", remoteGuests)
	began := time.Now()
	err := forEach(names, 4, func(name string) error {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		return f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Networks: []string{"none"}})
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := f.createGuest(ctx, api.GuestCreate{Name: "web", Template: "busybox", Networks: []string{"none"}, Start: true}); err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d guests in %s", remoteGuests+1, time.Since(began).Round(time.Millisecond))

	issued, err := f.client.IssueTrustToken(ctx, api.TrustTokenCreate{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	token, err := api.ParseTrustToken(issued.Token)
	if err != nil {
		b.Fatal(err)
	}
	conf, err := remotes.Load(filepath.Join(f.dir, "client"))
	if err != nil {
		b.Fatal(err)
	}
	cert, err := conf.ClientCertificate()
	if err != nil {
		b.Fatal(err)
	}
	remote := client.NewRemote(token.Addresses[0], pki.PinnedConfig(cert, token.Fingerprint))
	if _, err := remote.RedeemTrustToken(ctx, token.Secret); err != nil {
		b.Fatal(err)
	}
	if err := conf.Add("far", remotes.Remote{Address: token.Addresses[0], Fingerprint: token.Fingerprint}); err != nil {
		b.Fatal(err)
	}
	if err := conf.Save(); err != nil {
		b.Fatal(err)
	}
	return remoteSetup{remote: remote, configDir: filepath.Join(f.dir, "client")}
}

// execEcho runs `echo hi` in guest web and checks what it printed.
func execEcho(ctx context.Context, c *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	conn, err := c.Exec(ctx, "web", api.ExecRequest{Command: []string{"echo", "hi"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	var out bytes.Buffer
	code, err := stream.CopySession(conn, &out, io.Discard)
	if err != nil {
		return err
	}
	if code != 0 || out.String() != "hi\n" {
		return fmt.Errorf("exec echo hi: exit %d, printed %q", code, out.String())
	}
	return nil
}
