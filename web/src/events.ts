// The daemon's event stream (wss://HOST/1.0/events), reconnected with
// backoff while the session lasts.
import { get, operationEvent, setEventsLive, type Operation } from "./api";

export interface Event {
  /** resync: the stream was reopened after a drop; events may have been missed. */
  type: "lifecycle" | "operation" | "resync";
  time: string;
  action: string;
  guest?: string;
  operation?: Operation;
}

type Listener = (ev: Event) => void;
const listeners = new Set<Listener>();
let ws: WebSocket | null = null;
let running = false;
let delay = 1000;
let timer: number | undefined;
let lost: () => void = () => {};
let dropped = false;

/** Calls f with every event until the returned function is called. */
export function subscribe(f: Listener): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

setEventsLive(() => ws !== null && ws.readyState === WebSocket.OPEN);

/** Opens the stream; sessionLost runs when a close turns out to be a 401. */
export function startEvents(sessionLost: () => void): void {
  lost = sessionLost;
  if (running) return;
  running = true;
  connect();
}

export function stopEvents(): void {
  running = false;
  dropped = false;
  clearTimeout(timer);
  const s = ws;
  ws = null;
  s?.close();
}

function connect(): void {
  const s = new WebSocket(`wss://${location.host}/1.0/events?type=lifecycle,operation`);
  ws = s;
  s.onopen = () => {
    delay = 1000;
    if (dropped) {
      dropped = false;
      const ev: Event = { type: "resync", time: new Date().toISOString(), action: "reconnected" };
      listeners.forEach((f) => f(ev));
    }
  };
  s.onmessage = (m) => {
    if (typeof m.data !== "string") return;
    let ev: Event;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (ev.type === "operation" && ev.operation) operationEvent(ev.operation);
    listeners.forEach((f) => f(ev));
  };
  s.onclose = () => {
    if (ws !== s || !running) return;
    ws = null;
    dropped = true;
    // A websocket does not tell why an upgrade failed: ask the session.
    get("/ui/api/session", { quiet401: true }).then(
      () => schedule(),
      (e) => {
        if (e.status === 401) {
          running = false;
          lost();
        } else schedule();
      },
    );
  };
}

function schedule(): void {
  if (!running) return;
  timer = window.setTimeout(() => {
    if (running) connect();
  }, delay);
  delay = Math.min(delay * 2, 30000);
}
