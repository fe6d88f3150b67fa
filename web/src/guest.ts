// A guest's page (#/guests/NAME[/TAB]): its state and actions, and the
// tabs console, log, definition, snapshots and usage.
import { ApiError, del, enc, get, post, put, wait, type Guest, type Snapshot } from "./api";
import { ConsoleView } from "./console";
import { subscribe } from "./events";
import { actionButtons } from "./guests";
import { OpView, attempt, bytes, clear, confirmDialog, date, debounce, h, showError, showErrorAcross, table } from "./ui";
import { addSample, prefill, renderUsage } from "./usage";

export const TABS = ["console", "log", "definition", "snapshots", "usage"] as const;
type Tab = (typeof TABS)[number];
const TAB_LABELS: Record<Tab, string> = { console: "Console", log: "Log", definition: "Definition", snapshots: "Snapshots", usage: "Usage" };

const POLL_MS = 5000;

export function guestPage(main: HTMLElement, name: string, wanted?: string): () => void {
  const base = `/1.0/guests/${enc(name)}`;
  let guest: Guest | null = null;
  let tab: Tab | null = null;
  let gone = false;
  let cleanupTab: (() => void) | null = null;
  let onGuest: (() => void) | null = null; // the tab's reaction to a new state

  const progress = new OpView("guest-progress");
  const state = h("span", { id: "guest-state", class: "state-badge" });
  const actions = h("div", { id: "guest-actions", class: "buttons" });
  const meta = h("p", { class: "meta muted", id: "guest-meta" });
  const body = h("div", { id: "tab-body", class: "tab-body" });
  const tabButtons = TABS.map((t) => h("button", { type: "button", role: "tab", "data-tab": t, onclick: () => show(t) }, TAB_LABELS[t]));

  clear(main,
    h("section", { class: "page", id: "guest-page", "data-guest-page": name },
      h("div", { class: "page-head" },
        h("div", { class: "title" }, h("a", { href: "#/guests", class: "back" }, "Guests"), " / ", h("h1", null, name), state),
        actions),
      meta,
      progress.el,
      h("div", { class: "tabs", role: "tablist" }, tabButtons),
      body));

  const renderHead = () => {
    if (!guest) return;
    state.textContent = guest.state;
    state.dataset.state = guest.state;
    const g = guest;
    const bits = [
      g.type && `${g.type} (${g.class})`,
      g.arch,
      g.cpus && `${g.cpus} CPU${g.cpus === 1 ? "" : "s"}`,
      g.memory && bytes(g.memory),
      g.template && `template ${g.template}`,
      g.ipv4?.length && `IPv4 ${g.ipv4.join(", ")}`,
      g.networks?.length && `networks ${g.networks.join(", ")}`,
      g.publish?.length && `publish ${g.publish.join(", ")}`,
      g.pending?.length && `pending at next start: ${g.pending.join(", ")}`,
      g.error,
    ].filter(Boolean);
    meta.textContent = bits.join(" · ");
    clear(actions, actionButtons(g, progress, (action, finished, ok) => {
      if (finished && ok && action === "delete") {
        location.hash = "#/guests";
        return;
      }
      if (finished) load();
      else renderHead();
    }));
  };

  let seq = 0;
  const load = async () => {
    const mine = ++seq;
    try {
      const g = await get<Guest>(base);
      if (gone || mine !== seq) return;
      const was = guest?.state;
      guest = g;
      if (g.usage && g.state === "running") addSample(name, g.usage);
      renderHead();
      if (tab === null) show(isTab(wanted) ? wanted : g.state === "running" ? "console" : "log");
      else if (was !== g.state || tab === "usage") onGuest?.();
    } catch (e) {
      if (gone) return;
      if (e instanceof ApiError && e.status === 404) {
        clearInterval(timer); // nothing more to poll
        clear(body, h("p", { class: "muted" }, `No guest ${name}.`));
        state.textContent = "gone";
        clear(actions);
      }
      showError(e);
    }
  };

  const show = (t: Tab) => {
    if (gone) return;
    if (!guest) {
      wanted = t; // shown once the guest is loaded
      return;
    }
    cleanupTab?.();
    cleanupTab = null;
    onGuest = null;
    tab = t;
    for (const b of tabButtons) b.setAttribute("aria-selected", String(b.dataset.tab === t));
    history.replaceState(null, "", `#/guests/${enc(name)}/${t}`);
    clear(body);
    const g = guest;
    const r = ({ console: consoleTab, log: logTab, definition: definitionTab, snapshots: snapshotsTab, usage: usageTab } as const)[t](body, name, g, () => guest!);
    cleanupTab = r.cleanup || null;
    onGuest = r.changed || null;
  };

  const soon = debounce(load, 200);
  const unsubscribe = subscribe((ev) => {
    if (ev.type === "lifecycle" && ev.guest === name) {
      if (ev.action === "guest-deleted") {
        showErrorAcross(`guest ${name} was deleted`);
        location.hash = "#/guests";
        return;
      }
      soon();
    }
    if (ev.type === "resync" || (ev.type === "operation" && ev.action !== "running" && ev.operation?.resource?.includes(name))) soon();
  });
  const timer = window.setInterval(load, POLL_MS);
  prefill(name);
  load();
  return () => {
    gone = true;
    unsubscribe();
    clearInterval(timer);
    cleanupTab?.();
  };
}

function isTab(t: string | undefined): t is Tab {
  return (TABS as readonly string[]).includes(t || "");
}

interface TabResult {
  cleanup?: () => void;
  /** Called when the guest's state changed (or, for usage, at each poll). */
  changed?: () => void;
}

type TabFn = (body: HTMLElement, name: string, g: Guest, current: () => Guest) => TabResult;

const consoleTab: TabFn = (body, name, _g, current) => {
  let view: ConsoleView | null = null;
  const note = h("p", { class: "muted", id: "console-note" });
  body.appendChild(note);
  const update = () => {
    const running = current().state === "running";
    if (running && !view) {
      note.hidden = true;
      view = new ConsoleView(name);
      body.appendChild(view.el);
    } else if (running && view && !view.open) {
      view.connect(); // started again: reconnect by itself
    } else if (!running && !view) {
      note.hidden = false;
      note.textContent = `The guest is ${current().state}: its console opens when it runs (start it above). Its saved output is under Log.`;
    }
  };
  update();
  return { cleanup: () => view?.dispose(), changed: update };
};

// Console logs are raw terminal output: drop escape sequences and stray
// carriage returns so the <pre> reads as text.
function plain(s: string): string {
  return s
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, "")
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, "")
    .replace(/\x1b[@-Z\\-_]/g, "")
    .replace(/\r+\n/g, "\n")
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
}

const logTab: TabFn = (body, name) => {
  const pre = h("pre", { id: "log", class: "log" }, "Loading…");
  const load = () =>
    attempt(async () => {
      const text = await get<string>(`/1.0/guests/${enc(name)}/console/log`);
      const s = plain(typeof text === "string" ? text : JSON.stringify(text));
      pre.textContent = s || "(the log is empty)";
      pre.scrollTop = pre.scrollHeight;
    });
  body.append(h("div", { class: "buttons" }, h("button", { type: "button", id: "log-refresh", onclick: load }, "Refresh")), pre);
  load();
  return {};
};

const definitionTab: TabFn = (body, name) => {
  const path = `/1.0/guests/${enc(name)}/config`;
  const text = h("textarea", { id: "definition", class: "definition", spellcheck: "false", autocapitalize: "off", autocomplete: "off", rows: 24 }) as HTMLTextAreaElement;
  const result = h("div", { id: "definition-result" });
  const save = h("button", { type: "button", id: "definition-save", class: "primary" }, "Save") as HTMLButtonElement;
  const load = () =>
    attempt(async () => {
      const y = await get<string>(path);
      text.value = typeof y === "string" ? y : JSON.stringify(y, null, 2);
      clear(result);
    });
  save.addEventListener("click", async () => {
    save.disabled = true;
    clear(result);
    await attempt(async () => {
      const answer = await put(path, text.value, { contentType: "application/yaml" });
      const applied: Record<string, string> = (answer && answer.applied) || {};
      const keys = Object.keys(applied).sort();
      clear(result,
        h("p", { class: "ok" }, "Saved."),
        keys.length
          ? table("definition-applied", ["Key", "Applied"], h("tbody", null, keys.map((k) => h("tr", { "data-key": k }, h("td", null, k), h("td", null, applied[k])))))
          : h("p", { class: "muted" }, "Nothing changed."));
    });
    save.disabled = false;
  });
  body.append(
    h("p", { class: "muted" }, "The guest's guest.yaml. The daemon validates what you save; some changes apply live, others at the next start."),
    text,
    h("div", { class: "buttons" }, save, h("button", { type: "button", id: "definition-reload", onclick: load }, "Reload")),
    result);
  load();
  return {};
};

const snapshotsTab: TabFn = (body, name) => {
  const base = `/1.0/guests/${enc(name)}/snapshots`;
  const progress = new OpView("snapshot-progress");
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No snapshots.");
  const input = h("input", { id: "snapshot-name", placeholder: "before-upgrade", autocomplete: "off", autocapitalize: "off", spellcheck: "false" }) as HTMLInputElement;
  const create = h("button", { type: "submit", id: "snapshot-create", class: "primary" }, "Take snapshot") as HTMLButtonElement;
  let gone = false;
  const load = async () => {
    try {
      const list = await get<Snapshot[]>(base);
      if (gone) return;
      const snaps = Array.isArray(list) ? list : [];
      clear(tbody, snaps.map((s) =>
        h("tr", { "data-snapshot": s.name },
          h("td", { class: "name" }, s.name),
          h("td", null, date(s.createdAt)),
          h("td", { class: "num" }, s.size ? bytes(s.size) : ""),
          h("td", null, s.kind),
          h("td", null, s.running ? "yes" : "no"),
          h("td", { class: "actions" },
            h("button", { type: "button", class: "small", "data-action": "restore", onclick: () => act(s.name, "restore") }, "Restore"),
            h("button", { type: "button", class: "small danger", "data-action": "delete", onclick: () => act(s.name, "delete") }, "Delete")))));
      empty.hidden = snaps.length > 0;
    } catch (e) {
      if (!gone) showError(e);
    }
  };
  const run = async (f: () => Promise<unknown>) => {
    const ok = await attempt(() => wait(f() as Promise<any>, (op) => progress.update(op)));
    if (ok) progress.hide();
    await load();
    return ok;
  };
  const act = async (snap: string, action: "restore" | "delete") => {
    const q = action === "restore"
      ? `Restore guest ${name} to snapshot ${snap}? What changed since is lost (the guest must be stopped).`
      : `Delete snapshot ${snap} of ${name}?`;
    if (!(await confirmDialog(q, action === "restore" ? "Restore" : "Delete"))) return;
    await run(() => (action === "restore" ? post(`${base}/${enc(snap)}/restore`) : del(`${base}/${enc(snap)}`)));
  };
  const form = h("form", { id: "snapshot-form", class: "inline-form" }, h("label", { class: "field" }, h("span", null, "New snapshot"), input), create);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = input.value.trim();
    if (!n) return showError("snapshot name: give the snapshot a name");
    create.disabled = true;
    if (await run(() => post(base, { name: n }))) input.value = "";
    create.disabled = false;
  });
  body.append(form, progress.el, table("snapshots", ["Name", "Taken", "Size", "Kind", "Running", ""], tbody), empty);
  load();
  return { cleanup: () => (gone = true), changed: load };
};

const usageTab: TabFn = (body, name, _g, current) => {
  const el = h("div", { id: "usage" });
  body.appendChild(el);
  const draw = () => renderUsage(el, name, current().state === "running");
  draw();
  return { changed: draw };
};
