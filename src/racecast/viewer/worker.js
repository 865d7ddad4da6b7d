// Module worker: owns the WebSocket and decodes binary frames off the main thread.
//
// Everything the socket delivers reaches the page through one ordered postMessage stream, so a
// state ack never overtakes the frames sent before it. Messages to the page:
//   {kind: "open"} | {kind: "json", msg} | {kind: "frames", frames: [frame...]}
//   {kind: "close", code, reason} | {kind: "decode_error", message} | {kind: "fatal", message}
// A decoder turns one binary message into a list of frames shaped like the msgpack payload
// ({frame_index, t, lap, drivers: {CODE: {...}}, weather?}); chunked encodings return several.

import { Decoder } from "./vendor/msgpack/Decoder.mjs";

const msgpack = new Decoder(); // reused: its key cache makes repeated driver maps cheap

/** Decoder factories by encoding name; "compact" is loaded on demand from compact.js. */
const DECODERS = {
  msgpack: async () => (buf) => [msgpack.decode(new Uint8Array(buf))],
  compact: async () => {
    const mod = await import("./compact.js");
    if (typeof mod.createDecoder === "function") return mod.createDecoder();
    return (buf) => mod.decode(buf);
  },
};

let ws = null;
let decode = null;

async function connect(url, encoding) {
  if (ws) {
    ws.onclose = ws.onmessage = ws.onerror = null;
    ws.close();
  }
  decode = await (DECODERS[encoding] ?? DECODERS.msgpack)();
  const sock = new WebSocket(url);
  sock.binaryType = "arraybuffer";
  ws = sock;
  sock.onopen = () => postMessage({ kind: "open" });
  sock.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        postMessage({ kind: "decode_error", message: "server sent text that is not JSON" });
        return;
      }
      if (msg && msg.type !== "ping") postMessage({ kind: "json", msg });
      return;
    }
    let frames;
    try {
      frames = decode(ev.data);
    } catch (e) {
      postMessage({ kind: "decode_error", message: String(e && e.message ? e.message : e) });
      return;
    }
    if (frames && frames.length) postMessage({ kind: "frames", frames });
  };
  sock.onclose = (ev) => {
    if (ws === sock) ws = null;
    postMessage({ kind: "close", code: ev.code, reason: ev.reason });
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
