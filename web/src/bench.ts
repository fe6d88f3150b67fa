// The bench page (#/bench): the host's last `polyvisor bench` report, its
// self-contained report.html in a sandboxed frame (scripts, no origin: it
// cannot reach the session), after report.json said there is one.
import { ApiError, get } from "./api";
import { bytes, clear, date, h, showError } from "./ui";

const REPORT_HTML = "/1.0/bench/report.html";
const REPORT_JSON = "/1.0/bench/report.json";

const str = (v: unknown): string => (typeof v === "string" ? v.trim() : "");
const num = (v: unknown): number => (typeof v === "number" && isFinite(v) ? v : 0);

/** One line from report.json's top-level fields, whichever are there. */
export function benchSummary(r: any): string {
  if (!r || typeof r !== "object") return "";
  const host = r.host && typeof r.host === "object" ? r.host : {};
  const when = date(str(r.createdAt) || str(r.date) || undefined);
  const name = str(host.hostname) || (typeof r.host === "string" ? str(r.host) : "");
  const machine = [
    str(host.cpuModel),
    num(host.cpus) && `${num(host.cpus)} CPU${num(host.cpus) === 1 ? "" : "s"}`,
    num(host.memoryBytes) && bytes(num(host.memoryBytes)),
    str(host.arch),
    str(host.accel) && str(host.accel).toUpperCase(),
  ].filter(Boolean).join(", ");
  const run = [
    str(r.size) && `${str(r.size)} size`,
    num(r.rounds) && `${num(r.rounds)} round${num(r.rounds) === 1 ? "" : "s"}`,
  ].filter(Boolean).join(", ");
  let line = "Report";
  if (when) line += ` of ${when}`;
  if (name) line += ` on ${name}`;
  if (machine) line += ` (${machine})`;
  if (run) line += `: ${run}`;
  return line === "Report" ? "" : line + ".";
}

export function benchPage(main: HTMLElement): () => void {
  let gone = false;
  const summary = h("p", { id: "bench-summary", hidden: true });
  const none = h("p", { id: "bench-none", class: "muted", hidden: true });
  const frame = h("div", { class: "bench-frame", hidden: true });
  const open = h("a", { id: "bench-open", href: REPORT_HTML, target: "_blank", rel: "noopener noreferrer", hidden: true }, "Open in a new tab");
  const loading = h("p", { class: "muted" }, "Loading…");

  const load = async () => {
    loading.hidden = false;
    try {
      const report = await get(REPORT_JSON);
      if (gone) return;
      const line = benchSummary(report);
      summary.textContent = line;
      summary.hidden = line === "";
      none.hidden = true;
      open.hidden = false;
      // A new frame each time: a reload shows a report made since.
      clear(frame, h("iframe", { id: "bench-report", sandbox: "allow-scripts", src: REPORT_HTML, title: "bench report", loading: "eager" }));
      frame.hidden = false;
    } catch (e) {
      if (gone) return;
      summary.hidden = true;
      open.hidden = true;
      frame.hidden = true;
      clear(frame);
      if (e instanceof ApiError && e.status === 404) {
        none.textContent = e.message; // no report yet: a normal state, not a failure
        none.hidden = false;
      } else {
        none.hidden = true;
        showError(e);
      }
    } finally {
      if (!gone) loading.hidden = true;
    }
  };

  clear(main,
    h("section", { class: "page", id: "bench-page" },
      h("div", { class: "page-head" },
        h("h1", null, "Bench report"),
        h("div", { class: "buttons" }, open, h("button", { type: "button", id: "bench-refresh", onclick: () => load() }, "Reload"))),
      h("p", { class: "muted", id: "bench-how" }, "Run ", h("code", null, "polyvisor bench"), " on the server for a new report."),
      loading,
      summary,
      none,
      frame));
  main.classList.add("wide"); // the report's charts take the window's width
  load();
  return () => {
    gone = true;
    main.classList.remove("wide");
  };
}
