// Server-Sent Events over fetch(): EventSource cannot send the Authorization header, so the
// stream is read and parsed here, and resumed after a break with Last-Event-ID.

import { authHeaders, UNAUTHORIZED } from "./api.js";

/** The SSE wire format (WHATWG HTML, "event stream interpretation"), fed text chunk by chunk. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.lastId = null;
    this.retry = null;
    this.event = "";
    this.data = [];
  }

  feed(text) {
    this.buffer += text;
    // A chunk may end between the "\r" and "\n" of one line end: keep a trailing "\r".
    const cut = this.buffer.endsWith("\r") ? this.buffer.length - 1 : this.buffer.length;
    const lines = this.buffer.slice(0, cut).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + this.buffer.slice(cut);
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ event: this.event || "message", id: this.lastId, data: this.data.join("\n") });
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Follow the SSE stream at `path` until `signal` aborts: `onEvent({event, id, data})` per
 * event; `onStatus("live" | "reconnecting" | "closed", detail)` as the connection goes. After
 * a break it reconnects (after the server's `retry`) with Last-Event-ID, so no event is missed.
 * A 401 stops it (and fires UNAUTHORIZED), as does any 4xx.
 */
export function followStream(path, { onEvent, onStatus = () => {}, signal }) {
  let lastId = null;
  let delay = 2000;
  const run = async () => {
    while (!signal.aborted) {
      let parser = null;
      let detail = "the stream ended";
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, signal, cache: "no-store" });
        if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
        if (response.status >= 400 && response.status < 500) {
          onStatus("closed", `HTTP ${response.status}`);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        onStatus("live");
        parser = new SseParser((event) => {
          lastId = event.id ?? lastId;
          onEvent(event);
        });
        parser.lastId = lastId;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
      } catch (error) {
        if (signal.aborted) return;
        detail = String(error && error.message ? error.message : error);
      }
      if (signal.aborted) return;
      if (parser !== null && parser.retry !== null) delay = parser.retry;
      onStatus("reconnecting", detail);
      await pause(delay, signal);
    }
  };
  run();
}
