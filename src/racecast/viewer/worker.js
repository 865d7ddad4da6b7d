// Module worker: owns the WebSocket and decodes binary messages off the main thread.
//
// Everything the socket delivers reaches the page through one ordered postMessage stream, so a
// state ack never overtakes the frames sent before it — also when decoding is asynchronous
// (gzip chunks inflate through DecompressionStream): while a decode is pending, later messages
// queue behind it. Messages to the page:
//   {kind: "open"} | {kind: "json", msg, bytes} | {kind: "frames", frames: [frame...], bytes, encoding}
//   {kind: "close", code, reason} | {kind: "decode_error", message} | {kind: "fatal", message}
// `bytes` is the size of the WebSocket message as received (the bandwidth hook of the page).
// A decoder turns one binary message into a list of frames shaped like the msgpack payload
// ({frame_index, t, lap, drivers: {CODE: {...}}, weather?}); a chunk gives its 25 frames.

import { Decoder } from "./vendor/msgpack/Decoder.mjs";

const msgpack = new Decoder(); // reused: its key cache makes repeated driver maps cheap

/** Decoder factories by encoding name; compact.js is loaded on demand. */
const DECODERS = {
  msgpack: async () => (buf) => [msgpack.decode(new Uint8Array(buf))],
  compact: async () => (await import("./compact.js")).createDecoder(),
  chunks: async () => (await import("./compact.js")).createAsyncDecoder(),
};

let ws = null;
let gen = 0; // connection generation: messages of an older socket are never posted
let queue = null; // the promise of the last pending async decode (null: nothing pending)

const errorText = (e) => String(e && e.message ? e.message : e);

async function connect(url, encoding) {
  if (ws) {
    ws.onclose = ws.onmessage = ws.onerror = null;
    ws.close();
  }
  const mine = ++gen;
  queue = null;
  const decode = await (DECODERS[encoding] ?? DECODERS.msgpack)();
  if (mine !== gen) return; // another connect came while the decoder loaded
  const sock = new WebSocket(url);
  sock.binaryType = "arraybuffer";
  ws = sock;
  // Post now, or after the pending decodes (a stale socket's queue posts nothing).
  const post = (m) => {
    if (queue === null) postMessage(m);
    else enqueue(() => m);
  };
  const enqueue = (make) => {
    const job = (queue ?? Promise.resolve()).then(make).then((m) => {
      if (gen === mine && m) postMessage(m);
    });
    queue = job;
    job.then(() => { if (queue === job) queue = null; }, () => {});
  };
  sock.onopen = () => post({ kind: "open" });
  sock.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        post({ kind: "decode_error", message: "server sent text that is not JSON" });
        return;
      }
      if (msg && msg.type !== "ping") post({ kind: "json", msg, bytes: ev.data.length });
      return;
    }
    const bytes = ev.data.byteLength;
    const done = (frames) => (frames && frames.length ? { kind: "frames", frames, bytes, encoding } : null);
    const failed = (e) => ({ kind: "decode_error", message: errorText(e) });
    let out;
    try {
      out = decode(ev.data);
    } catch (e) {
      post(failed(e));
      return;
    }
    if (out && typeof out.then === "function") {
      const p = out.then(done, failed);
      enqueue(() => p);
    } else {
      const m = done(out);
      if (m) post(m);
    }
  };
  sock.onclose = (ev) => {
    if (ws === sock) ws = null;
    post({ kind: "close", code: ev.code, reason: ev.reason }); // after the frames it sent before closing
  };
}

onmessage = (ev) => {
  const m = ev.data;
  if (m.cmd === "connect") {
    connect(m.url, m.encoding).catch((e) => postMessage({ kind: "fatal", message: `cannot decode ${m.encoding} frames here: ${e}` }));
  } else if (m.cmd === "send") {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m.msg));
  } else if (m.cmd === "close") {
    if (ws) ws.close(1000, "viewer closed");
  }
};
