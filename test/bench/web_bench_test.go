package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// keystrokesPerLine is how many keys BenchmarkWebConsole types (and
// times) before it ends the line.
const keystrokesPerLine = 20

// webSetup is what BenchmarkWebConsole makes once: a logged-in page.
type webSetup struct {
	page *testenv.Browser
}

// BenchmarkWebConsole times the web console in headless Chromium against
// a daemon on loopback: the guests page's load (from a blank tab to the
// guest's row shown, the API's answer and the event stream's start
// included), and a keystroke's round trip in a running container's
// console (a key given to the page as a keyboard's input, until the
// shell's echo of it shows in the terminal: xterm.js, the websocket, the
// daemon, the supervisor's pty and back). Beside each keystroke, the same
// round trip by a Go websocket client on the unix socket into a second
// container, no browser: the baseline the ratio is against.
func BenchmarkWebConsole(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "web", "--listen", "127.0.0.1:0")
	if f.memo == nil {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		// The browser types into web, the raw client into raw: one
		// console's echo is not the other's.
		for _, name := range []string{"web", "raw"} {
			if err := f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Networks: []string{"none"}, Start: true}); err != nil {
				b.Fatal(err)
			}
		}
		info, err := f.client.Server(ctx)
		if err != nil || len(info.Listen) == 0 {
			b.Fatalf("server info: %+v, %v", info, err)
		}
		issued, err := f.client.IssueTrustToken(ctx, api.TrustTokenCreate{Name: "bench", Web: true})
		if err != nil {
			b.Fatal(err)
		}
		// The browser is the fixture's, as the daemon is: it outlives this
		// call of the benchmark.
		browser, closeBrowser, err := testenv.NewBrowser(context.Background(), "https://"+info.Listen[0], f.dir)
		if err != nil {
			b.Fatal(err)
		}
		f.onClose(closeBrowser)
		page := browser.For(b)
		page.Run("log in", chromedp.Navigate(issued.URLs[0]))
		page.WaitFor("the login", `document.querySelector('#whoami')?.textContent.trim() === 'bench'`)
		f.memo = webSetup{page: page}
	}
	page := f.memo.(webSetup).page.For(b)
	ws := unixConsole(b, f)
	defer ws.CloseNow()

	var load, key, raw samples
	b.ResetTimer()
	for i := range b.N {
		page.Run("open a blank tab", chromedp.Navigate("about:blank"))
		began := time.Now()
		page.Run("load the guests page", chromedp.Navigate(page.Base+"/ui/#/guests"))
		page.WaitFor("the guest's row", `document.querySelector('tr[data-guest="web"] td.state')?.textContent.trim() === 'running'`)
		load = append(load, time.Since(began))

		page.Route("#/guests/web/console")
		page.Run("open the console", chromedp.WaitVisible(chromedp.CSS("#console .xterm-rows")), chromedp.Click(chromedp.CSS("#console .xterm-screen")))
		typed := ""
		for k := range keystrokesPerLine {
			c := string(rune('a' + (i*7+k)%26))
			typed += c
			began := time.Now()
			page.Run("type "+c, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: c})
				return err
			}))
			if _, err := chromedp.Run(page.Context(), chromedp.Poll[bool](
				fmt.Sprintf(`[...document.querySelectorAll('#console .xterm-rows > div')].some(r => r.textContent.trimEnd().endsWith(%q))`, typed),
				chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
				b.Fatalf("the echo of %q: %v", typed, err)
			}
			key = append(key, time.Since(began))
			d, err := echoRoundTrip(b.Context(), ws, c)
			if err != nil {
				b.Fatal(err)
			}
			raw = append(raw, d)
		}
		page.TypeLine("")                                              // ends the browser's line
		ws.Write(b.Context(), websocket.MessageBinary, []byte("\x15")) // Ctrl-U: the raw client's line goes
	}
	b.StopTimer()
	b.ReportMetric(load.median(), "page-load-p50-ms")
	b.ReportMetric(key.median(), "key-p50-ms")
	b.ReportMetric(key.percentile(95), "key-p95-ms")
	b.ReportMetric(raw.median(), "raw-key-p50-ms")
	b.ReportMetric(key.median()/raw.median(), "key-vs-raw")
	b.Logf("n=%d ms p50/p95: page load %.1f/%.1f; keystroke in the browser %.1f/%.1f (%d keys), over the websocket alone %.1f/%.1f",
		len(load), load.median(), load.percentile(95), key.median(), key.percentile(95), len(key), raw.median(), raw.percentile(95))
}

// unixConsole opens guest raw's console websocket on the unix socket.
func unixConsole(b *testing.B, f *fixture) *websocket.Conn {
	b.Helper()
	ws, _, err := websocket.Dial(b.Context(), "ws://polyvisor"+api.Version+"/guests/raw/console/ws", &websocket.DialOptions{HTTPClient: f.daemon.HTTPClient()})
	if err != nil {
		b.Fatal(err)
	}
	return ws
}

// echoRoundTrip sends a key on the console websocket and waits for the
// terminal's echo of it.
func echoRoundTrip(ctx context.Context, ws *websocket.Conn, key string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	began := time.Now()
	if err := ws.Write(ctx, websocket.MessageBinary, []byte(key)); err != nil {
		return 0, err
	}
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return 0, fmt.Errorf("the echo of %q: %w", key, err)
		}
		if typ == websocket.MessageBinary && strings.Contains(string(data), key) {
			return time.Since(began), nil
		}
	}
}
