// The usage tab: a running guest's CPU, memory, disk and network over the
// last 15 minutes, from the `usage` of GET /1.0/guests/NAME polled every
// 5 s (prefilled from /usage/history where the server has it), drawn as
// inline SVG line charts.
import { enc, get, type Usage } from "./api";
import { bytes, clear, h } from "./ui";

export const WINDOW_MS = 15 * 60 * 1000;
const GAP_MS = 20 * 1000;

interface Sample {
  t: number;
  u: Usage;
}

/** Samples by guest, kept while the page lives. */
const store = new Map<string, Sample[]>();
const prefilled = new Set<string>();

export function addSample(guest: string, u: Usage, t = Date.now()): void {
  let list = store.get(guest);
  if (!list) store.set(guest, (list = []));
  if (list.length && t <= list[list.length - 1].t) {
    // out of order (a history answer): insert in place, dropping duplicates
    if (list.some((s) => Math.abs(s.t - t) < 1000)) return;
    list.push({ t, u });
    list.sort((a, b) => a.t - b.t);
  } else list.push({ t, u });
  const cut = Date.now() - WINDOW_MS - GAP_MS;
  while (list.length && list[0].t < cut) list.shift();
}

/** Fills the samples from GET .../usage/history once; a 404 (or any error) is fine. */
export async function prefill(guest: string): Promise<void> {
  if (prefilled.has(guest)) return;
  prefilled.add(guest);
  try {
    const hist = await get(`/1.0/guests/${enc(guest)}/usage/history`, { quiet401: true });
    if (!Array.isArray(hist)) return;
    for (const e of hist) {
      const t = Date.parse(e?.time);
      if (!isNaN(t) && e.usage && typeof e.usage === "object") addSample(guest, e.usage, t);
    }
  } catch {
    // no history on this server
  }
}

type Point = [number, number];

/** Rates between consecutive samples (per second) of the counter pick; resets and gaps are skipped. */
function rates(list: Sample[], pick: (u: Usage) => number, scale = 1): Point[] {
  const out: Point[] = [];
  for (let i = 1; i < list.length; i++) {
    const a = list[i - 1];
    const b = list[i];
    const dt = (b.t - a.t) / 1000;
    const dv = (pick(b.u) || 0) - (pick(a.u) || 0);
    if (dt <= 0 || dt > GAP_MS / 1000 || dv < 0) continue;
    out.push([b.t, (dv / dt) * scale]);
  }
  return out;
}

interface Series {
  label: string;
  cls: string;
  points: Point[];
}

function niceMax(v: number, floor: number, binary: boolean): number {
  v = Math.max(v, floor);
  const base = binary ? 1024 : 10;
  const p = Math.pow(base, Math.floor(Math.log(v) / Math.log(base)));
  for (const m of binary ? [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] : [1, 2, 5, 10]) {
    if (v <= m * p) return m * p;
  }
  return v;
}

const W = 300;
const H = 100;
const SVG = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function drawChart(id: string, title: string, series: Series[], fmt: (v: number) => string, floor: number, binary: boolean, now: number, span: number): HTMLElement {
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))), floor, binary);
  const from = now - span;
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "chart-svg", role: "img", "aria-label": title });
  for (const y of [0.25, 0.5, 0.75]) g.appendChild(svg("line", { x1: 0, x2: W, y1: H * y, y2: H * y, class: "grid-line" }));
  for (const s of series) {
    let d = "";
    let last = -Infinity;
    for (const [t, v] of s.points) {
      if (t < from) continue;
      const x = ((t - from) / span) * W;
      const y = H - (Math.min(v, max) / max) * (H - 2) - 1;
      d += `${t - last > GAP_MS ? "M" : "L"}${x.toFixed(1)} ${y.toFixed(1)}`;
      last = t;
    }
    if (d) g.appendChild(svg("path", { d, class: `line ${s.cls}`, "vector-effect": "non-scaling-stroke" }));
    const p = s.points[s.points.length - 1];
    if (p && p[0] >= from) {
      // the latest point as a dot (a zero-length line with round caps), seen even when it is the only one
      const x = (((p[0] - from) / span) * W).toFixed(1);
      const y = (H - (Math.min(p[1], max) / max) * (H - 2) - 1).toFixed(1);
      g.appendChild(svg("path", { d: `M${x} ${y}L${x} ${y}`, class: `dot ${s.cls}`, "vector-effect": "non-scaling-stroke" }));
    }
  }
  const legend = series.map((s) => {
    const p = s.points[s.points.length - 1];
    return h("span", { class: `legend ${s.cls}` }, `${s.label} ${p && now - p[0] < GAP_MS ? fmt(p[1]) : "–"}`);
  });
  return h("figure", { class: "chart", id },
    h("figcaption", null, h("strong", null, title), " ", legend),
    h("div", { class: "chart-box" }, h("span", { class: "chart-max" }, fmt(max)), g as unknown as HTMLElement),
    h("div", { class: "chart-axis muted" }, h("span", null, ago(span)), h("span", null, "now")));
}

const rate = (v: number) => `${bytes(v)}/s`;

function ago(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

/** Draws the four charts of guest into el. */
export function renderUsage(el: HTMLElement, guest: string, running: boolean): void {
  const list = store.get(guest) || [];
  const now = Date.now();
  // The x axis spans the samples there are (at least a minute), up to 15 minutes.
  const first = list.length ? list[0].t : now;
  const span = Math.min(WINDOW_MS, Math.max(60 * 1000, now - first));
  const mem: Point[] = list.map((s) => [s.t, s.u.memoryBytes || 0]);
  clear(el,
    running ? null : h("p", { class: "muted" }, "The guest is not running: its usage is measured while it runs."),
    list.length < 2 && running ? h("p", { class: "muted", id: "usage-wait" }, "Measuring: a point every 5 seconds…") : null,
    h("div", { class: "charts" },
      drawChart("usage-cpu", "CPU", [{ label: "% of one CPU", cls: "s1", points: rates(list, (u) => u.cpuSeconds, 100) }], (v) => `${v.toFixed(v < 10 ? 1 : 0)} %`, 10, false, now, span),
      drawChart("usage-memory", "Memory", [{ label: "used", cls: "s1", points: mem }], bytes, 1024 * 1024, true, now, span),
      drawChart("usage-disk", "Disk", [
        { label: "read", cls: "s1", points: rates(list, (u) => u.diskReadBytes) },
        { label: "write", cls: "s2", points: rates(list, (u) => u.diskWriteBytes) },
      ], rate, 1024, true, now, span),
      drawChart("usage-network", "Network", [
        { label: "receive", cls: "s1", points: rates(list, (u) => u.networkReceiveBytes) },
        { label: "transmit", cls: "s2", points: rates(list, (u) => u.networkTransmitBytes) },
      ], rate, 1024, true, now, span)));
}
