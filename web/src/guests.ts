// The guests page (#/guests): the table, the row actions and the create form.
import { del, enc, get, post, put, wait, type Guest, type Network, type Template } from "./api";
import { subscribe } from "./events";
import { $, OpView, attempt, bytes, clear, confirmDialog, debounce, h, showError, table } from "./ui";

/** Guests with an action of this page in flight: their buttons are disabled. */
const busy = new Map<string, string>();

const labels: Record<string, string> = { start: "Start", stop: "Stop", restart: "Restart", delete: "Delete" };

/**
 * The action buttons of a guest (a table row's, and the guest page's
 * header): Start when stopped, Stop and Restart when running, Delete.
 * Each asks for confirmation; progress goes to view, errors to the banner.
 */
export function actionButtons(g: Guest, view: OpView, after: (action: string, finished: boolean, ok: boolean) => void): HTMLElement[] {
  const actions: string[] = [];
  if (g.state === "stopped") actions.push("start");
  if (g.state === "running") actions.push("stop", "restart");
  actions.push("delete");
  const doing = busy.get(g.name);
  return actions.map((a) =>
    h("button", {
      type: "button",
      class: a === "delete" ? "small danger" : "small",
      "data-action": a,
      disabled: doing !== undefined,
      onclick: () => guestAction(g, a, view, after),
    }, labels[a]),
  );
}

async function guestAction(g: Guest, action: string, view: OpView, after: (action: string, finished: boolean, ok: boolean) => void): Promise<void> {
  const force = action === "delete" && g.state !== "stopped";
  const question =
    action === "delete"
      ? `Delete guest ${g.name}${force ? ` (it is ${g.state}: it is killed first)` : ""}? Its disks and snapshots are removed.`
      : `${labels[action]} guest ${g.name}?`;
  if (!(await confirmDialog(question, labels[action]))) return;
  busy.set(g.name, action);
  after(action, false, false);
  const path = `/1.0/guests/${enc(g.name)}`;
  const ok = await attempt(() =>
    wait(action === "delete" ? del(path + (force ? "?force=1" : "")) : put(path + "/state", { action }), (op) => view.update(op)),
  );
  busy.delete(g.name);
  if (ok) view.hide();
  after(action, true, ok);
}

export function guestsPage(main: HTMLElement): () => void {
  const progress = new OpView("action-progress");
  const createProgress = new OpView("create-progress");
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No guests yet: create one.");
  const form = createForm(createProgress, () => refresh());
  form.hidden = true;
  const openButton = h("button", {
    type: "button", id: "create-guest", class: "primary",
    onclick: () => {
      form.hidden = !form.hidden;
      if (!form.hidden) {
        (form as any).load();
        ($("#create-name", form) as HTMLInputElement).focus();
      }
    },
  }, "Create guest");
  clear(main,
    h("section", { class: "page", id: "guests-page" },
      h("div", { class: "page-head" },
        h("h1", null, "Guests"),
        h("div", { class: "buttons" }, openButton, h("button", { type: "button", id: "guests-refresh", onclick: () => refresh() }, "Refresh"))),
      form,
      createProgress.el,
      progress.el,
      table("guests", ["Name", "Type", "Class", "Arch", "State", "IPv4", "CPUs", "CPU use", "Memory", "Memory use", ""], tbody),
      empty));

  let guests: Guest[] = [];
  let gone = false;
  const render = () => {
    clear(tbody, guests.map((g) =>
      h("tr", { "data-guest": g.name, class: g.state === "broken" ? "broken" : undefined, title: g.error || undefined },
        h("td", { class: "name" }, h("a", { href: `#/guests/${enc(g.name)}` }, g.name)),
        h("td", null, g.type),
        h("td", null, g.class),
        h("td", null, g.arch),
        h("td", { class: "state", "data-state": g.state }, g.state),
        h("td", { class: "ipv4" }, (g.ipv4 || []).join(", ")),
        h("td", { class: "num" }, g.cpus ? String(g.cpus) : ""),
        h("td", { class: "num cpu-use" }, g.cpuPercent != null ? `${g.cpuPercent.toFixed(1)} %` : ""),
        h("td", { class: "num" }, bytes(g.memory)),
        h("td", { class: "num memory-use" }, g.memoryUsed ? bytes(g.memoryUsed) : ""),
        h("td", { class: "actions" },
          busy.has(g.name) ? h("span", { class: "muted" }, busy.get(g.name) + "…") : null,
          actionButtons(g, progress, (_a, finished) => (finished ? refresh() : render()))))));
    empty.hidden = guests.length > 0;
  };
  let seq = 0;
  const refresh = async () => {
    const mine = ++seq;
    try {
      const list = await get<Guest[]>("/1.0/guests?view=summary");
      if (gone || mine !== seq) return;
      guests = Array.isArray(list) ? list : [];
      render();
    } catch (e) {
      if (!gone) showError(e);
    }
  };
  const soon = debounce(refresh, 200);
  const unsubscribe = subscribe((ev) => {
    if (ev.type === "lifecycle" || ev.type === "resync" || (ev.type === "operation" && ev.action !== "running")) soon();
  });
  refresh();
  // Use is sampled every 10 s and comes with no event: the list is read
  // again at that pace while the page is shown.
  const poll = window.setInterval(refresh, 10_000);
  return () => {
    gone = true;
    window.clearInterval(poll);
    unsubscribe();
  };
}

/** What the form's Type offers: each class, as the guest type, engine and
 * isolation that make it, and the type of template its guests boot. */
const kinds: Record<string, { label: string; type: string; templates: string; engine?: string; isolation?: string }> = {
  container: { label: "container", type: "container", templates: "container" },
  chroot: { label: "container, chroot jail (no namespaces)", type: "container", templates: "container", isolation: "chroot" },
  vm: { label: "vm", type: "vm", templates: "vm" },
  bochs: { label: "vm under Bochs (BIOS templates)", type: "vm", templates: "vm", engine: "bochs" },
  uml: { label: "uml (User-Mode Linux)", type: "uml", templates: "container" },
};

/** The create form: POST /1.0/guests, then wait for its operation. */
function createForm(progress: OpView, created: () => void): HTMLElement {
  let templates: Template[] = [];
  const name = h("input", { id: "create-name", name: "name", required: true, autocomplete: "off", autocapitalize: "off", spellcheck: "false", placeholder: "web1", pattern: "[a-z]([a-z0-9-]{0,61}[a-z0-9])?" }) as HTMLInputElement;
  const type = h("select", { id: "create-type", name: "type" },
    Object.entries(kinds).map(([value, k]) => h("option", { value }, k.label))) as HTMLSelectElement;
  const arch = h("select", { id: "create-arch", name: "arch" }) as HTMLSelectElement;
  const template = h("select", { id: "create-template", name: "template", required: true }) as HTMLSelectElement;
  const cpus = h("input", { id: "create-cpus", name: "cpus", type: "number", min: 1, step: 1, inputmode: "numeric", placeholder: "1" }) as HTMLInputElement;
  const memory = h("input", { id: "create-memory", name: "memory", placeholder: "256MiB", autocomplete: "off", autocapitalize: "off", spellcheck: "false" }) as HTMLInputElement;
  const network = h("select", { id: "create-network", name: "network" }) as HTMLSelectElement;
  const publish = h("input", { id: "create-publish", name: "publish", placeholder: "8080:80, 5353:53/udp", autocomplete: "off", autocapitalize: "off", spellcheck: "false" }) as HTMLInputElement;
  const start = h("input", { id: "create-start", name: "start", type: "checkbox", checked: true }) as HTMLInputElement;
  const submit = h("button", { id: "create-submit", type: "submit", class: "primary" }, "Create") as HTMLButtonElement;

  const kind = () => kinds[type.value] || kinds.container;
  const fill = () => {
    const ofType = templates.filter((t) => t.type === kind().templates);
    const arches = [...new Set(ofType.map((t) => t.arch))].sort();
    const chosenArch = arches.includes(arch.value) ? arch.value : "";
    clear(arch, h("option", { value: "" }, "any (the host's by default)"), arches.map((a) => h("option", { value: a }, a)));
    arch.value = chosenArch;
    const shown = ofType.filter((t) => !chosenArch || t.arch === chosenArch);
    const names = new Map<string, string[]>();
    for (const t of shown) names.set(t.name, [...(names.get(t.name) || []), t.arch]);
    const before = template.value;
    clear(template, names.size === 0
      ? h("option", { value: "" }, `no ${kind().templates} templates${chosenArch ? " for " + chosenArch : ""}: build one on the Templates page`)
      : [...names].sort().map(([n, a]) => h("option", { value: n }, chosenArch ? n : `${n} (${a.join(", ")})`)));
    if (names.has(before)) template.value = before;
  };
  type.addEventListener("change", fill);
  arch.addEventListener("change", fill);

  const load = async () => {
    await attempt(async () => {
      const [ts, ns] = await Promise.all([get<Template[]>("/1.0/templates"), get<Network[]>("/1.0/networks")]);
      templates = Array.isArray(ts) ? ts : [];
      const before = network.value;
      const names = (Array.isArray(ns) ? ns : []).map((n) => n.name);
      clear(network, h("option", { value: "" }, "default"), names.map((n) => h("option", { value: n }, n)), h("option", { value: "none" }, "none"));
      if (before && [...network.options].some((o) => o.value === before)) network.value = before;
      fill();
    });
  };

  const field = (label: string, input: HTMLElement, hint?: string) =>
    h("label", { class: "field" }, h("span", null, label), input, hint ? h("small", { class: "muted" }, hint) : null);

  const form = h("form", { id: "create-form", class: "card", novalidate: true },
    h("h2", null, "Create a guest"),
    h("div", { class: "grid" },
      field("Name", name),
      field("Type", type),
      field("Arch", arch),
      field("Template", template),
      field("CPUs", cpus),
      field("Memory", memory),
      field("Network", network),
      field("Published ports", publish, "comma separated HOST:GUEST"),
      h("label", { class: "check" }, start, h("span", null, "Start it"))),
    h("div", { class: "buttons" },
      submit,
      h("button", { type: "button", id: "create-cancel", onclick: () => (form.hidden = true) }, "Cancel")));
  (form as any).load = load;

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!name.value.trim()) return showError("name: give the guest a name");
    if (!template.value) return showError("template: choose a template (build one on the Templates page)");
    const k = kind();
    const body: Record<string, unknown> = { name: name.value.trim(), template: template.value, type: k.type };
    if (k.engine) body.engine = k.engine;
    if (k.isolation) body.isolation = k.isolation;
    const archs = templates.filter((t) => t.type === k.templates && t.name === template.value).map((t) => t.arch);
    if (arch.value) body.arch = arch.value;
    else if (archs.length === 1) body.arch = archs[0];
    if (cpus.value.trim()) body.cpus = Number(cpus.value);
    if (memory.value.trim()) body.memory = memory.value.replace(/\s+/g, "");
    if (network.value) body.networks = [network.value];
    const ports = publish.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (ports.length) body.publish = ports;
    if (start.checked) body.start = true;
    submit.disabled = true;
    const ok = await attempt(() => wait(post("/1.0/guests", body), (op) => progress.update(op)));
    submit.disabled = false;
    if (ok) {
      progress.message(`Guest ${body.name} ${start.checked ? "created and started" : "created"}.`);
      name.value = "";
      form.hidden = true;
    }
    created();
  });
  return form;
}
