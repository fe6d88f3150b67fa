package testenv

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// Browser is a headless Chromium tab on a daemon's web console. Its
// methods fail the test or benchmark it was made for (or, after For,
// another one).
type Browser struct {
	t    testing.TB
	ctx  context.Context
	Base string // https://ADDR
	Dir  string // where screenshots go
	errs *pageErrors
}

// pageErrors are the exceptions a page threw.
type pageErrors struct {
	mu   sync.Mutex
	list []string
}

// OpenBrowser starts a browser (NewBrowser) that lives as long as t.
func OpenBrowser(t testing.TB, base string) *Browser {
	t.Helper()
	p, closeBrowser, err := NewBrowser(t.Context(), base, t.ArtifactDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeBrowser)
	return p.For(t)
}

// NewBrowser starts Debian's chromium headless until closeBrowser (or
// ctx's end), taking the daemon's self-signed certificate as a user who
// compared its fingerprint would; screenshots go to dir. Give it a test
// with For.
func NewBrowser(ctx context.Context, base, dir string) (p *Browser, closeBrowser func(), err error) {
	chromium, err := hostreq.Lookup("chromium")
	if err != nil {
		return nil, nil, err
	}
	profile, err := os.MkdirTemp("", "pv-chromium-")
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.NoSandbox, // root runs the tests
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
	)
	p = &Browser{Base: base, Dir: dir, errs: &pageErrors{}}
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancel := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			p.errs.mu.Lock()
			p.errs.list = append(p.errs.list, e.ExceptionDetails.Text)
			p.errs.mu.Unlock()
		}
	}))
	closeBrowser = func() {
		cancel()
		cancelAlloc()
		os.RemoveAll(profile)
	}
	p.ctx = tab
	if err := chromedp.Do(tab); err != nil {
		closeBrowser()
		return nil, nil, fmt.Errorf("start chromium: %w", err)
	}
	return p, closeBrowser, nil
}

// For is the same tab, failing t.
func (p *Browser) For(t testing.TB) *Browser {
	c := *p
	c.t = t
	return &c
}

// Run runs browser actions, failing the test with what was being done.
func (p *Browser) Run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// WaitFor polls a JavaScript condition until it holds.
func (p *Browser) WaitFor(what, js string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(90*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		// What the page shows says why: its text, its error banner, and a
		// screenshot among the artifacts.
		text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.querySelector('#main')?.innerText + ' | banner: ' + (document.querySelector('#error-text')?.textContent ?? '')`))
		if shot, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(p.Dir, "failure.png"), shot, 0o644)
		}
		p.t.Fatalf("wait for %s: %v; the page shows: %s", what, err, text)
	}
}

// Route moves the page to a hash route, as its links do.
func (p *Browser) Route(hash string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf("location.hash = %q", hash))); err != nil {
		p.t.Fatalf("go to %s: %v", hash, err)
	}
}

// Screenshot saves the page as name.png and checks it shows something:
// more than a handful of colours.
func (p *Browser) Screenshot(name string) {
	p.t.Helper()
	shot, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(p.Dir, name+".png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		p.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	colours := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if len(colours) < 8 {
		p.t.Errorf("screenshot %s (%s) is blank: %d colours", name, path, len(colours))
	}
}

// TypeLine types a line into the console, as a user's keys would: the
// text as a keyboard's input, then the Enter key.
func (p *Browser) TypeLine(line string) {
	p.t.Helper()
	p.Run("type "+line, chromedp.Click(chromedp.CSS("#console .xterm-screen")), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: line}); err != nil {
			return err
		}
		enter := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, Text: "\r"}
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, enter); err != nil {
			return err
		}
		enter.Type, enter.Text = input.DispatchKeyEventTypeKeyUp, ""
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, enter)
		return err
	}))
}

// ConsoleShows waits for a console row that reads text alone (the
// command's output, not its echo).
func (p *Browser) ConsoleShows(text string) {
	p.t.Helper()
	p.WaitFor("the console to show "+text, fmt.Sprintf(`[...document.querySelectorAll('#console .xterm-rows > div')].some(r => r.textContent.trim() === %q)`, text))
}

// StateIs waits for a guest's row to show state.
func (p *Browser) StateIs(name, state string) {
	p.t.Helper()
	p.WaitFor(name+" "+state, fmt.Sprintf(`document.querySelector('tr[data-guest=%q] td.state')?.textContent.trim() === %q`, name, state))
}

// ConfirmAction clicks one of a guest row's buttons and confirms it.
func (p *Browser) ConfirmAction(name, action string) {
	p.t.Helper()
	p.Run(action+" "+name,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-guest=%q] button[data-action=%q]`, name, action))),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")))
}

// Errors are the exceptions the page threw so far.
func (p *Browser) Errors() []string {
	p.errs.mu.Lock()
	defer p.errs.mu.Unlock()
	return append([]string{}, p.errs.list...)
}

// Context is the tab's chromedp context, for actions Browser has no
// method for.
func (p *Browser) Context() context.Context { return p.ctx }
