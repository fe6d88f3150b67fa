// DOM helpers, the error banner, the confirmation modal and formatting.
import type { Operation } from "./api";

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, any> | null;

/** Makes an element: attributes (on* are listeners), then children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "value") (el as any).value = v;
      else if (k === "checked") (el as any).checked = !!v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function $(sel: string, root: ParentNode = document): HTMLElement | null {
  return root.querySelector(sel);
}

export function clear(el: Node, ...children: Child[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
}

/** Shows one error line in the banner #error. */
export function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  const banner = $("#error")!;
  $("#error-text")!.textContent = msg;
  banner.hidden = false;
}

let keep = false;

/** Shows an error that the next change of page keeps (for a page that leaves). */
export function showErrorAcross(e: unknown): void {
  showError(e);
  keep = true;
}

/** Hides the banner when the page changes, unless showErrorAcross asked to keep it. */
export function pageChanged(): void {
  if (keep) keep = false;
  else hideError();
}

export function hideError(): void {
  $("#error")!.hidden = true;
  $("#error-text")!.textContent = "";
}

/** Runs f, showing what it throws in the banner; answers whether it worked. */
export async function attempt(f: () => Promise<unknown>): Promise<boolean> {
  try {
    await f();
    return true;
  } catch (e) {
    showError(e);
    return false;
  }
}

let pending: ((yes: boolean) => void) | null = null;

function settle(yes: boolean): void {
  const p = pending;
  pending = null;
  $("#confirm")!.hidden = true;
  p?.(yes);
}

/** The confirmation modal (#confirm, #confirm-yes, #confirm-no). */
export function confirmDialog(text: string, yesLabel = "Confirm"): Promise<boolean> {
  if (pending) settle(false);
  $("#confirm-text")!.textContent = text;
  $("#confirm-yes")!.textContent = yesLabel;
  $("#confirm")!.hidden = false;
  ($("#confirm-yes") as HTMLButtonElement).focus();
  return new Promise((resolve) => (pending = resolve));
}

export function initChrome(): void {
  $("#error-close")!.addEventListener("click", hideError);
  $("#confirm-yes")!.addEventListener("click", () => settle(true));
  $("#confirm-no")!.addEventListener("click", () => settle(false));
  $("#confirm")!.addEventListener("click", (ev) => {
    if (ev.target === $("#confirm")) settle(false);
  });
  document.addEventListener("keydown", (ev) => {
    if (pending && ev.key === "Escape") settle(false);
  });
}

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 268435456 → "256 MiB". */
export function bytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !isFinite(n)) return "";
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 || v >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1).replace(/\.0$/, "");
  return `${n < 0 ? "-" : ""}${s} ${units[i]}`;
}

export function date(s: string | undefined): string {
  if (!s || s.startsWith("0001-")) return "";
  const d = new Date(s);
  return isNaN(d.getTime()) ? s : d.toLocaleString();
}

/** A progress line for an operation: "KIND RESOURCE: phase 3/10" with a bar. */
export class OpView {
  el: HTMLElement;
  private text: HTMLElement;
  private bar: HTMLProgressElement;

  constructor(id?: string) {
    this.text = h("span", { class: "op-text" });
    this.bar = h("progress", { max: 1, value: 0 }) as HTMLProgressElement;
    this.bar.hidden = true;
    this.el = h("div", { class: "op", id, hidden: true }, this.text, this.bar);
  }

  update(op: Operation): void {
    this.el.hidden = false;
    const p = op.progress || {};
    let line = `${op.kind} ${op.resource}`.trim();
    if (op.status === "running") {
      line += ": " + (p.phase || "running");
      if (p.total && p.total > 0) {
        line += ` ${p.done || 0}/${p.total}`;
        this.bar.hidden = false;
        this.bar.max = p.total;
        this.bar.value = p.done || 0;
      } else {
        this.bar.hidden = true;
      }
    } else {
      this.bar.hidden = true;
      line += op.status === "success" ? ": done" : `: failed: ${op.error || ""}`;
      if (op.warnings?.length) line += ` (warnings: ${op.warnings.join("; ")})`;
    }
    this.el.dataset.status = op.status;
    this.text.textContent = line;
  }

  message(s: string): void {
    this.el.hidden = false;
    this.bar.hidden = true;
    this.text.textContent = s;
  }

  hide(): void {
    this.el.hidden = true;
  }
}

export function debounce(f: () => void, ms: number): () => void {
  let t: number | undefined;
  return () => {
    clearTimeout(t);
    t = window.setTimeout(f, ms);
  };
}

/** A table inside a box that scrolls sideways on a narrow screen. */
export function table(id: string, headers: string[], body: HTMLElement): HTMLElement {
  return h("div", { class: "table-wrap" }, h("table", { id }, h("thead", null, h("tr", null, headers.map((t) => h("th", null, t)))), body));
}
