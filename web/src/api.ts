// The daemon's REST API as the page uses it: same-origin requests, the
// session cookie going by itself, the CSRF token on every state-changing
// request, errors as one line, and operations waited on.

export interface Session {
  name: string;
  csrf: string;
  expiresAt: string;
}

export interface Progress {
  phase?: string;
  done?: number;
  total?: number;
}

export interface Operation {
  id: string;
  kind: string;
  resource: string;
  status: "running" | "success" | "failure";
  error?: string;
  errorKind?: string;
  progress?: Progress;
  warnings?: string[];
  result?: string;
}

export interface Usage {
  cpuSeconds: number;
  memoryBytes: number;
  diskReadBytes: number;
  diskWriteBytes: number;
  networkReceiveBytes: number;
  networkTransmitBytes: number;
}

export interface Guest {
  name: string;
  type: string;
  class: string;
  arch: string;
  state: string;
  ipv4?: string[] | null;
  cpus: number;
  memory: number;
  template?: string;
  networks?: string[] | null;
  publish?: string[] | null;
  error?: string;
  startedAt?: string;
  pending?: string[] | null;
  lastExit?: { code: number; signal?: number; exitedAt: string } | null;
  usage?: Usage | null;
  /** In listings (?view=summary), a running guest's use from its last usage samples. */
  cpuPercent?: number;
  memoryUsed?: number;
}

export interface Template {
  id: string;
  name: string;
  type: string;
  arch: string;
  source?: string;
  suite?: string;
  size?: number;
  createdAt?: string;
  usedBy?: string[] | null;
}

export interface Network {
  name: string;
  subnet: string;
  gateway: string;
  isolated: boolean;
  leases?: unknown[] | null;
}

export interface Snapshot {
  name: string;
  createdAt: string;
  size?: number;
  kind: string;
  running: boolean;
}

/** An answer that was not 2xx, as its one readable line. */
export class ApiError extends Error {
  constructor(message: string, public kind: string, public status: number) {
    super(message);
  }
}

let csrf = "";
let unauthorized: () => void = () => {};

export function setCSRF(token: string): void {
  csrf = token;
}

/** Sets what happens when an answer says the session is gone (401). */
export function onUnauthorized(f: () => void): void {
  unauthorized = f;
}

export interface RequestOptions {
  /** A body sent as it is with this content type instead of JSON. */
  contentType?: string;
  /** Do not call the unauthorized handler on 401 (login, session). */
  quiet401?: boolean;
}

/** The parsed answer: JSON when the daemon says so, text otherwise, null for none. */
export async function request<T = any>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<{ status: number; data: T }> {
  const init: RequestInit = { method, credentials: "same-origin", headers: {} };
  const headers = init.headers as Record<string, string>;
  if (method !== "GET" && method !== "HEAD") {
    if (csrf) headers["X-CSRF-Token"] = csrf; // none yet only for the login
    if (opts.contentType) {
      headers["Content-Type"] = opts.contentType;
      init.body = body as string;
    } else {
      headers["Content-Type"] = "application/json";
      init.body = body === undefined ? "{}" : JSON.stringify(body);
    }
  }
  let resp: Response;
  try {
    resp = await fetch(location.origin + path, init);
  } catch (e) {
    throw new ApiError(`cannot reach the server: ${(e as Error).message}`, "network", 0);
  }
  const data = parseAnswer(await resp.text(), resp.headers.get("Content-Type"));
  if (!resp.ok) throw answerError(method, path, resp.status, resp.statusText, data, opts.quiet401);
  return { status: resp.status, data };
}

/** An answer's body: JSON when the daemon says so, text otherwise, null for none. */
function parseAnswer(text: string, contentType: string | null): any {
  if (text === "") return null;
  if (!(contentType || "").includes("json")) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The error a non-2xx answer is: its {"error"} line, or the status. */
function answerError(method: string, path: string, status: number, statusText: string, data: any, quiet401?: boolean): ApiError {
  if (status === 401 && !quiet401) unauthorized();
  let line = data && typeof data === "object" && typeof data.error === "string" ? data.error : "";
  if (!line) line = `${method} ${path}: ${status} ${statusText || "error"}`;
  return new ApiError(firstLine(line), (data && data.kind) || "", status);
}

/** An upload in flight: done settles with the answer (an operation for a 202). */
export interface Upload<T> {
  done: Promise<T>;
  /** Stops sending; done then rejects with an ApiError of kind "aborted". */
  abort(): void;
}

/**
 * POSTs a file as the raw body (application/octet-stream), with the CSRF
 * token, by XMLHttpRequest: fetch cannot tell how much of a body is sent.
 * progress gets the bytes sent and the total as they go; sent runs once
 * the whole body is sent (the answer may come much later).
 */
export function upload<T = any>(path: string, file: Blob, progress?: (sent: number, total: number) => void, sent?: () => void): Upload<T> {
  const xhr = new XMLHttpRequest();
  const shown = path.split("?")[0]; // the query (options) would drown the line
  const done = new Promise<T>((resolve, reject) => {
    xhr.open("POST", location.origin + path);
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (ev) => progress?.(ev.loaded, ev.lengthComputable && ev.total > 0 ? ev.total : file.size);
    xhr.upload.onload = () => sent?.();
    xhr.onload = () => {
      const data = parseAnswer(xhr.responseText, xhr.getResponseHeader("Content-Type"));
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(answerError("POST", shown, xhr.status, xhr.statusText, data));
    };
    xhr.onerror = () => reject(new ApiError(`cannot reach the server: the upload to ${shown} failed`, "network", 0));
    xhr.onabort = () => reject(new ApiError("upload cancelled", "aborted", 0));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

function firstLine(s: string): string {
  const i = s.indexOf("\n");
  return (i < 0 ? s : s.slice(0, i)).slice(0, 500);
}

export const get = <T = any>(path: string, opts?: RequestOptions) => request<T>("GET", path, undefined, opts).then((r) => r.data);
export const post = <T = any>(path: string, body?: unknown) => request<T>("POST", path, body).then((r) => r.data);
export const del = <T = any>(path: string) => request<T>("DELETE", path).then((r) => r.data);
export const put = <T = any>(path: string, body?: unknown, opts?: RequestOptions) => request<T>("PUT", path, body, opts).then((r) => r.data);

export const enc = encodeURIComponent;

// Operation events from the events socket, by operation id.
type OpListener = (op: Operation) => void;
const opListeners = new Map<string, Set<OpListener>>();
let eventsLive = () => false;

/** Hands an operation event to whoever waits on it. */
export function operationEvent(op: Operation): void {
  opListeners.get(op.id)?.forEach((f) => f(op));
}

/** Tells waits whether progress comes by events (long waits) or not (short ones). */
export function setEventsLive(f: () => boolean): void {
  eventsLive = f;
}

function isOperation(x: any): x is Operation {
  return x && typeof x === "object" && typeof x.id === "string" && typeof x.status === "string";
}

/**
 * Waits for the operation a request answered with (202), calling progress
 * with each state seen, and throws its error on failure. An answer that is
 * no operation (201, 204) is returned as it is.
 */
export async function wait<T = any>(answer: Promise<T>, progress?: (op: Operation) => void): Promise<T> {
  const first: any = await answer;
  if (!isOperation(first)) return first;
  let op: Operation = first;
  let done = false;
  const listener: OpListener = (o) => {
    if (!done) progress?.(o);
  };
  let set = opListeners.get(op.id);
  if (!set) opListeners.set(op.id, (set = new Set()));
  set.add(listener);
  try {
    progress?.(op);
    while (op.status === "running") {
      const timeout = eventsLive() ? 30 : 3;
      const next = await get(`/1.0/operations/${enc(op.id)}/wait?timeout=${timeout}`);
      if (isOperation(next)) op = next;
      progress?.(op);
    }
  } finally {
    done = true;
    set.delete(listener);
    if (set.size === 0) opListeners.delete(op.id);
  }
  if (op.status === "failure") throw new ApiError(op.error || `${op.kind} failed`, op.errorKind || "", 0);
  return op as unknown as T;
}
