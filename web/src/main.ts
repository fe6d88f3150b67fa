// polyvisor's web console: the page served at /ui/ by the daemon
// (internal/webui embeds the build of this directory, see web/build.mjs).
// Plain TypeScript and DOM, bundled by esbuild; routes are in the hash:
// #/login/SECRET, #/guests, #/guests/NAME[/TAB], #/templates, #/networks,
// #/imports, #/bench.
//
// Stable selectors (for the chromedp tests; keep them when changing the page):
//
//   everywhere   #topbar (hidden until logged in), #version (the daemon's),
//                #whoami (the logged-in name), #logout,
//                a[data-nav="guests|templates|networks|imports|bench"] (the current one has .active),
//                #error (the banner; its line in #error-text, #error-close dismisses it),
//                #confirm (the confirmation modal): #confirm-text, #confirm-yes, #confirm-no,
//                #main (the page), #not-logged-in (shown without a session),
//                #login-page (while logging in; #login-failed when the secret was refused)
//   #/guests     #guests-page, #create-guest (opens #create-form), #guests-refresh,
//                form fields #create-name, #create-type (container|chroot|vm|bochs|uml), #create-arch,
//                #create-template (option values are template names), #create-cpus,
//                #create-memory, #create-network ("" default, network names, "none"),
//                #create-publish, #create-start (checkbox), #create-submit, #create-cancel,
//                #create-progress (the create operation's progress), #action-progress,
//                table#guests, rows tr[data-guest="NAME"] with td.state (the state text, also
//                in its data-state),
//                td.ipv4, and button[data-action="start|stop|restart|delete"]
//   #/guests/N   #guest-page[data-guest-page="NAME"], #guest-state (state text, data-state),
//                #guest-actions button[data-action="start|stop|restart|delete"],
//                #guest-progress, tabs button[data-tab="console|log|definition|snapshots|usage"]
//                (the shown one has aria-selected="true"), #tab-body;
//                console: #console (xterm, DOM renderer: text in #console .xterm-rows; type
//                  into "#console textarea" with CDP Input.insertText or key events that
//                  carry text: chromedp.SendKeys's keyDown+char pairs reach xterm twice),
//                  #console-status, #console-reconnect, #console-note (guest not running);
//                log: pre#log, #log-refresh;
//                definition: textarea#definition, #definition-save, #definition-reload,
//                  #definition-result (table#definition-applied, rows tr[data-key="KEY"]);
//                snapshots: #snapshot-name, #snapshot-create, #snapshot-progress, table#snapshots,
//                  rows tr[data-snapshot="NAME"] with button[data-action="restore|delete"];
//                usage: #usage with figure#usage-cpu, #usage-memory, #usage-disk, #usage-network
//   #/templates  #templates-page, #build-source, #build-type, #build-arch, #build-name,
//                #build-submit, #build-progress, table#templates, rows tr[data-template="ID"]
//                with button[data-action="delete"]
//   #/networks   #networks-page, #network-name, #network-subnet, #network-isolated,
//                #network-submit, table#networks, rows tr[data-network="NAME"] with
//                button[data-action="delete"]
//   #/imports    #imports-page, form#import-form: #import-file (type=file), #import-as (guest|template),
//                #import-name, #import-network ("" default, "none", network names), #import-cpus,
//                #import-memory, #import-firmware ("" as the file says, bios, uefi), #import-start
//                (checkbox, unchecked; the network, CPUs, memory and start fields are hidden with
//                template), #import-submit (disabled while an upload or import runs),
//                #import-cancel (shown while uploading; aborts the upload), #import-note;
//                #import-upload-progress (its line in .op-text, a <progress>; data-status
//                uploading|sent|done|aborted|failed, data-sent and data-total in bytes),
//                #import-progress (the import operation, as the other progress lines),
//                #import-warnings (hidden without any; one li each), #import-result (the line
//                naming what was made; a guest's name is a#import-result-link to #/guests/NAME).
//                The page is kept while another is shown: an upload goes on, and shows on return
//   #/bench      #bench-page, #bench-open (a link to the report in a new tab), #bench-refresh,
//                #bench-how, #bench-summary (one line from report.json), iframe#bench-report
//                (sandbox="allow-scripts", src /1.0/bench/report.html), #bench-none (the 404
//                line instead of the frame when there is no report)
import "./style.css";
import { ApiError, get, onUnauthorized, request, setCSRF, type Session } from "./api";
import { benchPage } from "./bench";
import { startEvents, stopEvents } from "./events";
import { guestPage } from "./guest";
import { guestsPage } from "./guests";
import { importsPage } from "./imports";
import { networksPage, templatesPage } from "./templates";
import { $, clear, h, hideError, initChrome, pageChanged, showError } from "./ui";

let session: Session | null = null;
let cleanup: (() => void) | null = null;
let versionShown = false;

const main = () => $("#main")!;

function leave(): void {
  const f = cleanup;
  cleanup = null;
  f?.();
}

function parse(): string[] {
  const raw = location.hash.replace(/^#\/?/, "");
  return raw.split("/").filter((s) => s !== "").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
}

function setSession(s: Session): void {
  session = s;
  setCSRF(s.csrf);
  $("#whoami")!.textContent = s.name;
  $("#topbar")!.hidden = false;
  startEvents(notLoggedIn);
  if (!versionShown) {
    versionShown = true;
    get("/1.0").then(
      (info) => ($("#version")!.textContent = info && info.version ? String(info.version) : ""),
      () => (versionShown = false),
    );
  }
}

function notLoggedIn(message?: string): void {
  leave();
  session = null;
  setCSRF("");
  stopEvents();
  $("#topbar")!.hidden = true;
  clear(main(),
    h("section", { class: "page center", id: "not-logged-in" },
      h("h1", null, message || "polyvisor"),
      h("p", null, "Not logged in: ask the server's admin for a login link (", h("code", null, "polyvisor trust add NAME --web"), ")."),
      h("p", { class: "muted" }, "The link logs this browser in once; it then stays logged in until the session expires or you log out.")));
}

async function login(secret: string): Promise<void> {
  leave();
  $("#topbar")!.hidden = true;
  clear(main(), h("section", { class: "page center", id: "login-page" }, h("p", null, "Logging in…")));
  try {
    const { data } = await request<Session>("POST", "/ui/api/login", { secret }, { quiet401: true });
    history.replaceState(null, "", "#/guests");
    hideError();
    setSession(data);
    route();
  } catch (e) {
    history.replaceState(null, "", "#/login");
    showError(e);
    clear(main(),
      h("section", { class: "page center", id: "login-failed" },
        h("h1", null, "Login failed"),
        h("p", { class: "error-line" }, (e as Error).message),
        h("p", null, "A login link works once and expires: ask the server's admin for a new one (", h("code", null, "polyvisor trust add NAME --web"), ").")));
  }
}

async function ensureSession(): Promise<boolean> {
  if (session) return true;
  try {
    setSession(await get<Session>("/ui/api/session", { quiet401: true }));
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) notLoggedIn();
    else {
      clear(main(),
        h("section", { class: "page center", id: "unreachable" },
          h("h1", null, "Cannot reach the server"),
          h("p", { class: "error-line" }, (e as Error).message),
          h("button", { type: "button", onclick: () => route() }, "Try again")));
    }
    return false;
  }
}

async function route(): Promise<void> {
  const [page, arg, sub] = parse();
  if (page === "login") {
    if (arg) return login(arg);
    if (session) return void (location.hash = "#/guests");
    return notLoggedIn();
  }
  if (!(await ensureSession())) return;
  leave();
  document.querySelectorAll<HTMLElement>("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === (page || "guests")));
  const m = main();
  switch (page) {
    case "guests":
      cleanup = arg ? guestPage(m, arg, sub) : guestsPage(m);
      document.title = arg ? `${arg} · polyvisor` : "Guests · polyvisor";
      break;
    case "templates":
      cleanup = templatesPage(m);
      document.title = "Templates · polyvisor";
      break;
    case "networks":
      cleanup = networksPage(m);
      document.title = "Networks · polyvisor";
      break;
    case "imports":
      cleanup = importsPage(m);
      document.title = "Import · polyvisor";
      break;
    case "bench":
      cleanup = benchPage(m);
      document.title = "Bench · polyvisor";
      break;
    default:
      history.replaceState(null, "", "#/guests");
      return route();
  }
}

async function logout(): Promise<void> {
  try {
    await request("POST", "/ui/api/logout", {}, { quiet401: true });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) return showError(e);
  }
  history.replaceState(null, "", "#/login");
  notLoggedIn("Logged out");
}

function start(): void {
  initChrome();
  onUnauthorized(() => notLoggedIn());
  $("#logout")!.addEventListener("click", logout);
  window.addEventListener("hashchange", () => {
    pageChanged();
    route();
  });
  route();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
