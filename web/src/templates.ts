// The templates page (#/templates) and the networks page (#/networks).
import { del, enc, get, post, wait, type Network, type Template } from "./api";
import { subscribe } from "./events";
import { OpView, attempt, bytes, clear, confirmDialog, date, debounce, h, showError, table } from "./ui";

const field = (label: string, input: HTMLElement, hint?: string) =>
  h("label", { class: "field" }, h("span", null, label), input, hint ? h("small", { class: "muted" }, hint) : null);

const text = (id: string, placeholder: string, extra: Record<string, any> = {}) =>
  h("input", { id, placeholder, autocomplete: "off", autocapitalize: "off", spellcheck: "false", ...extra }) as HTMLInputElement;

export function templatesPage(main: HTMLElement): () => void {
  const progress = new OpView("build-progress");
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No templates yet: build one.");
  const source = text("build-source", "busybox", { value: "busybox", list: "build-sources", required: true });
  const type = h("select", { id: "build-type" }, h("option", { value: "container" }, "container"), h("option", { value: "vm" }, "vm")) as HTMLSelectElement;
  const arch = text("build-arch", "the host's");
  const name = text("build-name", "from the source");
  const submit = h("button", { type: "submit", id: "build-submit", class: "primary" }, "Build") as HTMLButtonElement;
  const form = h("form", { id: "build-form", class: "card", novalidate: true },
    h("h2", null, "Build a template"),
    h("datalist", { id: "build-sources" }, ["busybox", "debian", "debian:bookworm", "debian:trixie"].map((s) => h("option", { value: s }))),
    h("div", { class: "grid" },
      field("Source", source, "busybox or debian:SUITE"),
      field("Type", type),
      field("Arch", arch, "optional: amd64, arm64…"),
      field("Name", name, "optional")),
    h("div", { class: "buttons" }, submit));

  let gone = false;
  const load = async () => {
    try {
      const list = await get<Template[]>("/1.0/templates");
      if (gone) return;
      const ts = Array.isArray(list) ? list : [];
      clear(tbody, ts.map((t) =>
        h("tr", { "data-template": t.id },
          h("td", { class: "name" }, t.id),
          h("td", null, t.name),
          h("td", null, t.type),
          h("td", null, t.arch),
          h("td", null, [t.source, t.suite].filter(Boolean).join(" ")),
          h("td", { class: "num" }, bytes(t.size)),
          h("td", null, date(t.createdAt)),
          h("td", null, (t.usedBy || []).join(", ")),
          h("td", { class: "actions" },
            h("button", {
              type: "button", class: "small danger", "data-action": "delete",
              onclick: async () => {
                if (!(await confirmDialog(`Delete template ${t.id}?`, "Delete"))) return;
                await attempt(() => del(`/1.0/templates/${enc(t.id)}`));
                load();
              },
            }, "Delete")))));
      empty.hidden = ts.length > 0;
    } catch (e) {
      if (!gone) showError(e);
    }
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body: Record<string, string> = { source: source.value.trim(), type: type.value };
    if (!body.source) return showError("source: busybox or debian:SUITE");
    if (arch.value.trim()) body.arch = arch.value.trim();
    if (name.value.trim()) body.name = name.value.trim();
    submit.disabled = true;
    const ok = await attempt(() => wait(post("/1.0/templates", body), (op) => progress.update(op)));
    submit.disabled = false;
    if (ok) progress.message("Template built.");
    load();
  });

  clear(main,
    h("section", { class: "page", id: "templates-page" },
      h("div", { class: "page-head" }, h("h1", null, "Templates"), h("div", { class: "buttons" }, h("button", { type: "button", id: "templates-refresh", onclick: () => load() }, "Refresh"))),
      form,
      progress.el,
      table("templates", ["ID", "Name", "Type", "Arch", "Source", "Size", "Created", "Used by", ""], tbody),
      empty));
  const soon = debounce(load, 200);
  const unsubscribe = subscribe((ev) => {
    if (ev.type === "operation" && ev.action !== "running" && ev.operation?.kind?.startsWith("template")) soon();
  });
  load();
  return () => {
    gone = true;
    unsubscribe();
  };
}

export function networksPage(main: HTMLElement): () => void {
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No networks.");
  const name = text("network-name", "lab0", { required: true });
  const subnet = text("network-subnet", "10.99.0.0/24 (optional)");
  const isolated = h("input", { id: "network-isolated", type: "checkbox" }) as HTMLInputElement;
  const submit = h("button", { type: "submit", id: "network-submit", class: "primary" }, "Create") as HTMLButtonElement;
  const form = h("form", { id: "network-form", class: "card", novalidate: true },
    h("h2", null, "Create a network"),
    h("div", { class: "grid" },
      field("Name", name),
      field("Subnet", subnet),
      h("label", { class: "check" }, isolated, h("span", null, "Isolated (no way out to the host's networks)"))),
    h("div", { class: "buttons" }, submit));

  let gone = false;
  const load = async () => {
    try {
      const list = await get<Network[]>("/1.0/networks");
      if (gone) return;
      const ns = Array.isArray(list) ? list : [];
      clear(tbody, ns.map((n) =>
        h("tr", { "data-network": n.name },
          h("td", { class: "name" }, n.name),
          h("td", null, n.subnet),
          h("td", null, n.gateway),
          h("td", null, n.isolated ? "yes" : "no"),
          h("td", { class: "num" }, String((n.leases || []).length)),
          h("td", { class: "actions" },
            h("button", {
              type: "button", class: "small danger", "data-action": "delete",
              onclick: async () => {
                if (!(await confirmDialog(`Delete network ${n.name}?`, "Delete"))) return;
                await attempt(() => del(`/1.0/networks/${enc(n.name)}`));
                load();
              },
            }, "Delete")))));
      empty.hidden = ns.length > 0;
    } catch (e) {
      if (!gone) showError(e);
    }
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body: Record<string, unknown> = { name: name.value.trim() };
    if (!body.name) return showError("name: give the network a name");
    if (subnet.value.trim()) body.subnet = subnet.value.trim();
    if (isolated.checked) body.isolated = true;
    submit.disabled = true;
    if (await attempt(() => wait(post("/1.0/networks", body)))) {
      name.value = "";
      subnet.value = "";
      isolated.checked = false;
    }
    submit.disabled = false;
    load();
  });

  clear(main,
    h("section", { class: "page", id: "networks-page" },
      h("div", { class: "page-head" }, h("h1", null, "Networks"), h("div", { class: "buttons" }, h("button", { type: "button", id: "networks-refresh", onclick: () => load() }, "Refresh"))),
      form,
      table("networks", ["Name", "Subnet", "Gateway", "Isolated", "Leases", ""], tbody),
      empty));
  load();
  return () => {
    gone = true;
  };
}
