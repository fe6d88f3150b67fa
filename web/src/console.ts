// A guest's live serial console: xterm.js (its DOM renderer, so the screen
// is readable from .xterm-rows) over wss://HOST/1.0/guests/NAME/console/ws.
// Binary messages carry terminal bytes both ways; text messages are JSON:
// {"type":"resize","cols","rows"} from the page, {"type":"exit","code"}
// from the server.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { enc } from "./api";
import { h } from "./ui";

export class ConsoleView {
  el: HTMLElement;
  private term: Terminal;
  private fit = new FitAddon();
  private ws: WebSocket | null = null;
  private status: HTMLElement;
  private reconnect: HTMLButtonElement;
  private observer: ResizeObserver;
  private disposed = false;
  private encoder = new TextEncoder();

  constructor(private guest: string) {
    const box = h("div", { id: "console", class: "console" });
    this.status = h("span", { id: "console-status", class: "muted" });
    this.reconnect = h("button", { id: "console-reconnect", type: "button", class: "small", hidden: true, onclick: () => this.connect() }, "Reconnect") as HTMLButtonElement;
    this.el = h("div", { class: "console-wrap" }, h("div", { class: "console-bar" }, this.status, this.reconnect), box);
    this.term = new Terminal({
      cursorBlink: true,
      fontSize: 14,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      scrollback: 5000,
      theme: { background: "#111418", foreground: "#d8dee9" },
    });
    this.term.loadAddon(this.fit);
    this.term.onData((d) => this.send(this.encoder.encode(d)));
    this.term.onBinary((d) => {
      const b = new Uint8Array(d.length);
      for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
      this.send(b);
    });
    this.term.onResize(({ cols, rows }) => this.sendResize(cols, rows));
    this.observer = new ResizeObserver(() => this.refit());
    // Opened once the element is in the document (xterm measures it).
    requestAnimationFrame(() => {
      if (this.disposed) return;
      this.term.open(box);
      this.refit();
      this.observer.observe(box);
      this.connect();
    });
  }

  private refit(): void {
    if (this.disposed || !this.el.isConnected || this.el.offsetParent === null) return;
    try {
      this.fit.fit();
    } catch {
      // not laid out yet
    }
  }

  private send(data: Uint8Array | string): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
  }

  /** Whether the socket is open or opening. */
  get open(): boolean {
    return this.ws !== null;
  }

  private sendResize(cols: number, rows: number): void {
    this.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  connect(): void {
    if (this.disposed) return;
    this.ws?.close();
    this.reconnect.hidden = true;
    this.status.textContent = "connecting…";
    const ws = new WebSocket(`wss://${location.host}/1.0/guests/${enc(this.guest)}/console/ws`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.status.textContent = "connected";
      this.refit();
      this.sendResize(this.term.cols, this.term.rows);
      this.term.focus();
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      if (typeof m.data === "string") {
        let msg: any;
        try {
          msg = JSON.parse(m.data);
        } catch {
          return;
        }
        if (msg && msg.type === "exit") {
          this.term.write(`\r\n\x1b[33m[guest stopped: exit code ${msg.code}]\x1b[0m\r\n`);
          this.status.textContent = `guest stopped (exit code ${msg.code})`;
        }
        return;
      }
      this.term.write(new Uint8Array(m.data as ArrayBuffer));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.disposed) return;
      this.ws = null;
      this.term.write("\r\n\x1b[33m[console closed]\x1b[0m\r\n");
      this.status.textContent = "console closed" + (ev.reason ? `: ${ev.reason}` : "");
      this.reconnect.hidden = false;
    };
  }

  dispose(): void {
    this.disposed = true;
    this.observer.disconnect();
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.term.dispose();
  }
}
