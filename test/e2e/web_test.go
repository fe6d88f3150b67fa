package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// listenAddress is where a daemon serves HTTPS.
func listenAddress(t *testing.T, d *testenv.Daemon) string {
	t.Helper()
	var info api.ServerInfo
	if err := jsonUnmarshal(d.Must(t, "server", "info", "--format", "json"), &info); err != nil || len(info.Listen) == 0 {
		t.Fatalf("server info: %+v, %v", info, err)
	}
	return info.Listen[0]
}

// A user with only a browser logs in with a one-time link, creates a
// busybox container from the page and sees it turn running through the
// event stream, types into its console and reads the answer, takes a
// snapshot, stops and deletes it; then the same console round trip on a
// TCG VM. Every page is saved as a screenshot (the test's artifacts) and
// checked not blank; the page throws no exception.
func TestWebConsoleInAHeadlessBrowser(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t, "--listen", "127.0.0.1:0")
	base := "https://" + listenAddress(t, d)
	link := strings.TrimSpace(d.Must(t, "trust", "add", "web-tester", "--web"))
	if !strings.HasPrefix(link, base+"/ui/#/login/") {
		t.Fatalf("login link %q, want one to %s", link, base)
	}
	p := testenv.OpenBrowser(t, base)
	t.Logf("screenshots in %s", p.Dir)

	p.Run("open the login link", chromedp.Navigate(link))
	p.WaitFor("the logged-in name", `document.querySelector('#whoami')?.textContent.trim() === 'web-tester'`)
	p.WaitFor("the secret out of the address bar", `!location.hash.includes('login')`)
	p.Screenshot("guests")

	p.Run("create a container",
		chromedp.Click(chromedp.CSS("#create-guest")),
		chromedp.WaitVisible(chromedp.CSS("#create-name")),
		chromedp.SetValue(chromedp.CSS("#create-name"), "webc"),
		chromedp.SetValue(chromedp.CSS("#create-type"), "container"),
	)
	p.WaitFor("the busybox template offered", `[...document.querySelectorAll('#create-template option')].some(o => o.value === 'busybox')`)
	p.Run("submit the form",
		chromedp.SetValue(chromedp.CSS("#create-template"), "busybox"),
		chromedp.SetValue(chromedp.CSS("#create-network"), "none"),
		chromedp.Click(chromedp.CSS("#create-submit")),
	)
	p.StateIs("webc", "running")
	if g := info(t, d, "webc"); g.State != api.StateRunning || g.Type != "container" {
		t.Fatalf("the guest the page made: %+v", g)
	}

	p.Route("#/guests/webc/console")
	p.Run("open the console", chromedp.WaitVisible(chromedp.CSS("#console .xterm-rows")))
	p.TypeLine("echo hello-web")
	p.ConsoleShows("hello-web")
	p.Screenshot("console")

	for _, tab := range []string{"log", "definition", "usage"} {
		p.Run("open the "+tab+" tab", chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-tab=%q]`, tab))))
		p.WaitFor("the "+tab+" tab", fmt.Sprintf(`document.querySelector('button[data-tab=%q]')?.getAttribute('aria-selected') === 'true'`, tab))
		if tab == "definition" {
			p.WaitFor("the definition", `document.querySelector('textarea#definition')?.value.includes('name: webc')`)
		}
		p.Screenshot(tab)
	}

	p.Run("take a snapshot",
		chromedp.Click(chromedp.CSS(`button[data-tab="snapshots"]`)),
		chromedp.WaitVisible(chromedp.CSS("#snapshot-name")),
		chromedp.SetValue(chromedp.CSS("#snapshot-name"), "s1"),
		chromedp.Click(chromedp.CSS("#snapshot-create")),
	)
	p.WaitFor("snapshot s1 listed", `document.querySelector('tr[data-snapshot="s1"]') !== null`)
	p.Screenshot("snapshots")
	if out := d.Must(t, "snapshot", "list", "webc"); !strings.Contains(out, "s1") {
		t.Fatalf("the page's snapshot is not the daemon's: %s", out)
	}

	p.Route("#/guests")
	p.StateIs("webc", "running")
	p.ConfirmAction("webc", "stop")
	p.StateIs("webc", "stopped")

	// A file from the user's machine, imported through the page: webc's
	// root tree, exported, uploaded back as a new guest.
	tarball := filepath.Join(t.TempDir(), "webc.tar")
	d.Must(t, "export", "webc", tarball, "--format", "tar")
	p.Route("#/imports")
	p.Run("upload webc's tarball",
		chromedp.WaitVisible(chromedp.CSS("#import-file")),
		chromedp.SetUploadFiles(chromedp.CSS("#import-file"), []string{tarball}),
		chromedp.SetValue(chromedp.CSS("#import-name"), "webimp"),
		chromedp.SetValue(chromedp.CSS("#import-network"), "none"),
		chromedp.Click(chromedp.CSS("#import-submit")),
	)
	p.WaitFor("the import's result", `(document.querySelector('#import-result')?.textContent ?? '').includes('webimp')`)
	p.Screenshot("imports")
	if g := info(t, d, "webimp"); g.Type != "container" {
		t.Fatalf("the guest the page imported: %+v", g)
	}
	d.Must(t, "delete", "webimp")

	p.Route("#/bench")
	p.WaitFor("the bench page to say there is no report", `(document.querySelector('#bench-none')?.textContent ?? '').includes('polyvisor bench')`)
	p.Screenshot("bench")

	p.Route("#/guests")
	p.ConfirmAction("webc", "delete")
	p.WaitFor("webc gone", `document.querySelector('tr[data-guest="webc"]') === null && document.querySelector('table#guests') !== null`)
	if gs, _ := d.Guests(); len(gs) != 0 {
		t.Fatalf("guests left after the page deleted webc: %+v", gs)
	}

	for _, pg := range []string{"templates", "networks"} {
		p.Route("#/" + pg)
		p.WaitFor("the "+pg+" page", fmt.Sprintf(`document.querySelector('a[data-nav=%q]')?.classList.contains('active')`, pg))
		p.Screenshot(pg)
	}

	// On a phone's screen the guests page fits its width: nothing to
	// scroll sideways but the table itself.
	p.Run("a phone's screen", chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile))
	p.Route("#/guests")
	p.WaitFor("the guests page on a phone", `document.querySelector('#guests-page') !== null && document.documentElement.scrollWidth <= window.innerWidth`)
	p.Screenshot("phone-guests")
	p.Run("a desktop's screen again", chromedp.EmulateViewport(1280, 900))

	// A TCG VM's serial console, through the same page.
	requireVMTemplates(t)
	copyTemplate(t, env.main, d, "busybox.vm.amd64")
	launch(t, d, "busybox", "webvm", "--type", "vm")
	p.Route("#/guests/webvm/console")
	p.Run("open the VM's console", chromedp.WaitVisible(chromedp.CSS("#console .xterm-rows")))
	p.TypeLine("echo hello-vm")
	p.ConsoleShows("hello-vm")
	p.Screenshot("vm-console")

	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page threw: %s", strings.Join(errs, "; "))
	}
}
