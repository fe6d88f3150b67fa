// The imports page (#/imports): a file from the browser's machine uploaded
// to POST /1.0/imports/upload and imported as a guest or a template, with
// the upload's progress, then the import operation's.
//
// The page is built once and kept: an upload or import goes on while
// another page is shown, and coming back shows where it stands.
import { ApiError, enc, get, upload, wait, type Network, type Operation, type Upload } from "./api";
import { OpView, attempt, bytes, clear, h, showError } from "./ui";

const field = (label: string, input: HTMLElement, hint?: string) =>
  h("label", { class: "field" }, h("span", null, label), input, hint ? h("small", { class: "muted" }, hint) : null);

const text = (id: string, placeholder: string, extra: Record<string, any> = {}) =>
  h("input", { id, placeholder, autocomplete: "off", autocapitalize: "off", spellcheck: "false", ...extra }) as HTMLInputElement;

/** The upload's progress line: "12 MiB of 100 MiB (12%)" with a bar. */
class UploadView {
  el: HTMLElement;
  private text: HTMLElement;
  private bar: HTMLProgressElement;
  private started = 0;

  constructor(id: string) {
    this.text = h("span", { class: "op-text" });
    this.bar = h("progress", { max: 1, value: 0 }) as HTMLProgressElement;
    this.el = h("div", { class: "op", id, hidden: true }, this.text, this.bar);
  }

  start(name: string, total: number): void {
    this.started = performance.now();
    this.progress(name, 0, total);
  }

  progress(name: string, sent: number, total: number): void {
    const pct = total > 0 ? Math.floor((sent / total) * 100) : 0;
    const secs = (performance.now() - this.started) / 1000;
    const rate = secs >= 1 && sent > 0 ? `, ${bytes(sent / secs)}/s` : "";
    this.set("uploading", `Uploading ${name}: ${bytes(sent)} of ${bytes(total)} (${pct}%${rate})`, sent, total);
  }

  set(status: string, line: string, sent?: number, total?: number): void {
    this.el.hidden = false;
    this.el.dataset.status = status;
    this.text.textContent = line;
    const bar = sent !== undefined && total !== undefined && total > 0;
    this.bar.hidden = !bar;
    if (bar) {
      this.bar.max = total!;
      this.bar.value = Math.min(sent!, total!);
      this.el.dataset.sent = String(sent);
      this.el.dataset.total = String(total);
    }
  }

  hide(): void {
    this.el.hidden = true;
  }
}

let page: { section: HTMLElement; load: () => Promise<void> } | null = null;

export function importsPage(main: HTMLElement): () => void {
  if (!page) page = build();
  clear(main, page.section);
  page.load();
  return () => {};
}

function build(): { section: HTMLElement; load: () => Promise<void> } {
  const file = h("input", { id: "import-file", type: "file", required: true }) as HTMLInputElement;
  const as = h("select", { id: "import-as" }, h("option", { value: "guest" }, "a guest"), h("option", { value: "template" }, "a template")) as HTMLSelectElement;
  const name = text("import-name", "from the file");
  const network = h("select", { id: "import-network" }, h("option", { value: "" }, "default"), h("option", { value: "none" }, "none")) as HTMLSelectElement;
  const cpus = text("import-cpus", "as the file says", { type: "number", min: 1, step: 1, inputmode: "numeric" });
  const memory = text("import-memory", "as the file says");
  const firmware = h("select", { id: "import-firmware" },
    h("option", { value: "" }, "as the file says"), h("option", { value: "bios" }, "BIOS"), h("option", { value: "uefi" }, "UEFI")) as HTMLSelectElement;
  const start = h("input", { id: "import-start", type: "checkbox" }) as HTMLInputElement;
  const submit = h("button", { type: "submit", id: "import-submit", class: "primary" }, "Import") as HTMLButtonElement;
  const cancel = h("button", { type: "button", id: "import-cancel", hidden: true }, "Cancel") as HTMLButtonElement;

  // What describes a guest alone: the daemon refuses it with as=template.
  const guestOnly = [
    field("Network", network),
    field("CPUs", cpus, "optional"),
    field("Memory", memory, "optional: 512MiB, 2GiB"),
    h("label", { class: "check" }, start, h("span", null, "Start it")),
  ];
  const showFields = () => guestOnly.forEach((el) => (el.hidden = as.value !== "guest"));
  as.addEventListener("change", showFields);

  const form = h("form", { id: "import-form", class: "card", novalidate: true },
    h("h2", null, "Import a file from this computer"),
    h("div", { class: "grid" },
      field("File", file),
      field("Import as", as),
      field("Name", name, "optional"),
      field("Firmware", firmware, "how a disk boots"),
      guestOnly),
    h("div", { class: "buttons" }, submit, cancel),
    h("p", { class: "muted note", id: "import-note" },
      "Formats are told by the file's content, not its name: qcow2, raw, VMDK (one file), VDI, VHD, VHDX, OVA, " +
        "a container's root file system as a tarball, or a ", h("code", null, "docker save"), " tarball. " +
        "A definition with its disks beside it (.vmx, .ovf, libvirt XML) needs the command line on the server: ",
      h("code", null, "polyvisor import FILE"), "."));

  const uploadView = new UploadView("import-upload-progress");
  const opView = new OpView("import-progress");
  const warnings = h("div", { id: "import-warnings", class: "card warnings", hidden: true });
  const result = h("p", { id: "import-result", class: "ok", hidden: true });

  let running: Upload<Operation> | null = null;
  const keepTab = (ev: BeforeUnloadEvent) => {
    ev.preventDefault();
    ev.returnValue = ""; // older browsers ask only with it set
  };

  const showWarnings = (ws: string[] | undefined) => {
    const list = (ws || []).filter((w) => typeof w === "string" && w !== "");
    clear(warnings, h("strong", null, "Warnings"), h("ul", null, list.map((w) => h("li", null, w))));
    warnings.hidden = list.length === 0;
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (running || submit.disabled) return;
    const f = file.files?.[0];
    if (!f) return showError("file: choose a file to import");
    const options: Record<string, unknown> = { as: as.value };
    if (name.value.trim()) options.name = name.value.trim();
    if (as.value === "guest") {
      if (network.value) options.networks = [network.value];
      const c = cpus.value.trim();
      if (c) {
        const n = Number(c);
        if (!Number.isInteger(n) || n < 1) return showError("cpus: a whole number, 1 or more");
        options.cpus = n;
      }
      if (memory.value.trim()) options.memory = memory.value.replace(/\s+/g, "");
      if (start.checked) options.start = true;
    }
    if (firmware.value) options.firmware = firmware.value;

    opView.hide();
    showWarnings([]);
    result.hidden = true;
    submit.disabled = true;
    cancel.hidden = false;
    cancel.disabled = false;
    window.addEventListener("beforeunload", keepTab);
    uploadView.start(f.name, f.size);
    const up = upload<Operation>(`/1.0/imports/upload?filename=${enc(f.name)}&options=${enc(JSON.stringify(options))}`, f,
      (sent, total) => uploadView.progress(f.name, sent, total),
      () => {
        cancel.hidden = true;
        window.removeEventListener("beforeunload", keepTab);
        uploadView.set("sent", `Uploaded ${f.name} (${bytes(f.size)}): waiting for the server…`, f.size, f.size);
      });
    running = up;
    let last = null as Operation | null;
    const done = up.done.then((answer) => {
      running = null;
      cancel.hidden = true;
      uploadView.set("done", `Uploaded ${f.name} (${bytes(f.size)}).`);
      return answer;
    });
    try {
      const op = await wait<Operation>(done, (o) => {
        last = o;
        opView.update({ ...o, warnings: undefined }); // shown below, a line each
        showWarnings(o.warnings);
      });
      const made = (op && typeof op === "object" && op.result) || options.name || "";
      if (options.as === "guest") {
        clear(result, "Imported guest ", made ? h("a", { href: `#/guests/${enc(String(made))}`, id: "import-result-link" }, String(made)) : "", options.start ? " and started it." : ".");
      } else {
        clear(result, "Imported template ", h("strong", null, String(made)), " (see ", h("a", { href: "#/templates" }, "Templates"), ").");
      }
      result.hidden = false;
      file.value = ""; // a second import of the same is rarely meant
      name.value = "";
    } catch (e) {
      if (e instanceof ApiError && e.kind === "aborted") {
        uploadView.set("aborted", `Upload of ${f.name} cancelled.`);
      } else {
        if (!last) uploadView.set("failed", `Upload of ${f.name} failed.`);
        showError(e);
      }
    } finally {
      running = null;
      window.removeEventListener("beforeunload", keepTab);
      submit.disabled = false;
      cancel.hidden = true;
    }
  });

  cancel.addEventListener("click", () => {
    if (!running) return;
    cancel.disabled = true;
    running.abort();
  });

  const section = h("section", { class: "page", id: "imports-page" },
    h("div", { class: "page-head" }, h("h1", null, "Import")),
    form,
    uploadView.el,
    opView.el,
    result,
    warnings);
  showFields();

  const load = async () => {
    await attempt(async () => {
      const ns = await get<Network[]>("/1.0/networks");
      const before = network.value;
      const names = (Array.isArray(ns) ? ns : []).map((n) => n.name).filter((n) => typeof n === "string" && n !== "" && n !== "none");
      clear(network, h("option", { value: "" }, "default"), names.map((n) => h("option", { value: n }, n)), h("option", { value: "none" }, "none"));
      if ([...network.options].some((o) => o.value === before)) network.value = before;
    });
  };
  return { section, load };
}
