// The replay connection as the page sees it: a worker-owned WebSocket that reconnects by itself.
//
// Events (callbacks set by the owner):
//   onOpen()                      socket open (the server then sends loading_* messages)
//   onMessage(msg)                a JSON message other than ping
//   onFrames(frames)              decoded frames, in arrival order
//   onDown({code, reason, retryIn, attempt})   connection lost; another try follows in retryIn ms
//   onFatal({code, reason})       the server refused this replay for good (no retry)
//
// Encodings: "msgpack" and "compact" (one frame per message, `?encoding=`), "chunks" (chunk mode:
// `?mode=chunks&compression=gzip`, one gzip-compressed one-second chunk per message; identity
// where the browser has no DecompressionStream). `bytesReceived` counts every message's bytes.

const RETRY_MS = [250, 500, 1000, 2000, 4000];
const FATAL_CODES = new Set([4404, 4400, 4403, 1008]); // unknown replay or room, bad request, wrong room token, policy violation

export class ReplayConnection {
  constructor(replayId, { encoding = "msgpack", base = location, extra = "" } = {}) {
    this.replayId = replayId;
    this.base = base;
    this.extra = extra; // more query (a room: `room=...&token=...`), kept across encodings
    this._setEncoding(encoding);
    this.attempt = 0;
    this.bytesReceived = 0;
    this.open = false;
    this.stopped = false;
    this.timer = null;
    this.onOpen = this.onMessage = this.onFrames = this.onDown = this.onFatal = () => {};
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.worker.onmessage = (ev) => this._handle(ev.data);
    this.worker.onerror = (ev) => {
      ev.preventDefault();
      this.onFatal({ code: 0, reason: `frame decoder failed to start: ${ev.message || "worker error"}` });
    };
  }

  _setEncoding(encoding) {
    this.encoding = encoding;
    const proto = this.base.protocol === "https:" ? "wss:" : "ws:";
    // Always a query: a connection that asks for nothing speaks the seed's protocol (no state replies).
    const q = encoding === "chunks" ? `?mode=chunks&compression=${chunkCompression()}`
      : `?encoding=${encodeURIComponent(encoding)}`;
    const more = this.extra ? "&" + this.extra : "";
    this.url = `${proto}//${this.base.host}/ws/replay/${encodeURIComponent(this.replayId)}${q}${more}`;
  }

  /** Reconnect at once asking for another frame encoding (the old socket closes silently). */
  switchEncoding(encoding) {
    this._setEncoding(encoding);
    this.open = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.worker.postMessage({ cmd: "connect", url: this.url, encoding: this.encoding });
  }

  send(msg) {
    this.worker.postMessage({ cmd: "send", msg });
  }

  /** No more reconnects; the socket closes now (`close`) or when the server closes it. */
  stop({ close = true } = {}) {
    this.stopped = true;
    clearTimeout(this.timer);
    if (close) this.worker.postMessage({ cmd: "close" });
  }

  _handle(m) {
    switch (m.kind) {
      case "open":
        this.open = true;
        this.attempt = 0;
        this.onOpen();
        break;
      case "json":
        this.bytesReceived += m.bytes || 0;
        this.onMessage(m.msg);
        break;
      case "frames":
        this.bytesReceived += m.bytes || 0;
        if (m.encoding !== this.encoding) break; // posted by the socket before a switch of encoding
        this.onFrames(m.frames);
        break;
      case "fatal":
        this.stopped = true;
        this.onFatal({ code: 0, reason: m.message });
        break;
      case "decode_error":
        this.onMessage({ type: "client_error", message: m.message });
        break;
      case "close": {
        const wasOpen = this.open;
        this.open = false;
        if (FATAL_CODES.has(m.code)) {
          this.onFatal({ code: m.code, reason: m.reason });
          return;
        }
        if (this.stopped) return;
        const retryIn = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
        this.attempt += 1;
        this.onDown({ code: m.code, reason: m.reason, retryIn, attempt: this.attempt, wasOpen });
        this.timer = setTimeout(() => this.connect(), retryIn);
        break;
      }
    }
  }
}

/** The chunk compression this browser can inflate: gzip through DecompressionStream, else none. */
export function chunkCompression() {
  return typeof DecompressionStream === "function" ? "gzip" : "identity";
}
