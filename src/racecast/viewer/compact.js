// Decoder for racecast's compact frames and one-second chunks (plain ES module, no build step).
//
// Byte layouts: docs/protocol.md, "Compact encoding" and "Chunks". Every decoded frame has the
// shape of the msgpack frames: {frame_index, t, lap, drivers: {CODE: {x, y, speed, ...}}, weather?}
// with values at the channel's resolution (x/y/dist in m to 1 cm, speed to 0.1 km/h, times to
// 1 ms, unknown values null, status as its label).
//
// API
//   decodeCompact(buf, key = null) -> {frame, key}
//       One WebSocket message of compact frames (a keyframe, a delta frame, or a keyframe then a
//       delta of its span). `key` is the keyframe state from the previous call; keep the returned one.
//   new CompactDecoder().decode(buf) -> frame          the same, keeping the keyframe itself
//   decodeChunk(buf) -> [frame, ...]                    one raw (uncompressed) chunk
//   decodeChunks(buf) -> [frame, ...]                   raw chunks back to back (HTTP ?from=K&count=M)
//   decodeChunkColumns(buf) -> {first_frame, n_frames, codes, t, lap, columns, weather}
//       the chunk as integer columns (Float64Array, frame-major: columns[name][j * drivers + d])
//   createDecoder() -> (buf) => [frame, ...]            any raw binary message, synchronously
//   createAsyncDecoder() -> async (buf) => [frame, ...] also gzip-compressed chunks (DecompressionStream);
//       results resolve in call order
//   DecodeError, MissingKeyframe (a delta frame whose keyframe the decoder does not hold)
//
// Errors: truncated, garbled or oversized input throws DecodeError, never anything else.

export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
}

export class MissingKeyframe extends DecodeError {
  constructor(message) {
    super(message);
    this.name = "MissingKeyframe";
  }
}

const MAGIC = 0xc1;
const VERSION = 1;
const KIND_KEY = 0;
const KIND_DELTA = 1;
const KIND_CHUNK = 2;
const KIND_NAMES = ["keyframe", "delta frame", "chunk"];
const MAX_PAYLOAD_BYTES = 4 << 20;
const MAX_DRIVERS = 255;
const MAX_CODE_BYTES = 16;
const MAX_CHUNK_FRAMES = 1000;
const MAX_WEATHER_FIELDS = 16;
export const NULL = -2147483648;

// [wire id, name, scale, fast, nullable, chunk delta order]
const CHANNELS = [
  [0, "x", 100, true, false, 2],
  [1, "y", 100, true, false, 2],
  [2, "speed", 10, true, false, 1],
  [3, "throttle", 1, true, false, 1],
  [4, "brake", 1, true, false, 1],
  [5, "dist", 100, true, false, 2],
  [6, "rel_dist", 100000, true, false, 2],
  [7, "race_progress", 100000, true, false, 2],
  [8, "gap", 1000, true, true, 1],
  [9, "interval", 1000, true, true, 1],
  [10, "gear", 1, false, false, 0],
  [11, "drs", 1, false, false, 0],
  [12, "lap", 1, false, false, 0],
  [13, "position", 1, false, false, 0],
  [14, "tyre", 1, false, false, 0],
  [15, "tyre_age", 1, false, false, 0],
  [16, "status", 1, false, false, 0],
  [17, "lap_time", 1000, false, true, 0],
  [18, "sector1", 1000, false, true, 0],
  [19, "sector2", 1000, false, true, 0],
  [20, "sector3", 1000, false, true, 0],
].map(([id, name, scale, fast, nullable, order]) => ({ id, name, scale, fast, nullable, order }));
const FAST = CHANNELS.filter((c) => c.fast);
const SLOW = CHANNELS.filter((c) => !c.fast);
// Order of each car's keys, as in the msgpack frames.
export const DRIVER_FIELDS = [
  "x", "y", "speed", "gear", "lap", "position", "tyre", "tyre_age", "throttle", "brake", "drs",
  "dist", "rel_dist", "race_progress", "gap", "interval", "lap_time", "sector1", "sector2", "sector3", "status",
];
const STATUS_LABELS = ["running", "pit", "out", "finished", "dns"];
const WEATHER_NAMES = { 1: "air_temp", 2: "track_temp", 3: "humidity", 4: "rainfall", 5: "wind_speed", 6: "wind_direction" };

function bytesOf(buf) {
  if (buf instanceof Uint8Array) return buf;
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  throw new DecodeError("expected an ArrayBuffer or a typed array");
}

/** Reads the varints of one payload; every count is checked against the bytes left. */
class Reader {
  constructor(b, pos, end, what) {
    this.b = b;
    this.pos = pos;
    this.end = end;
    this.what = what;
  }
  fail(msg) {
    return new DecodeError(`${this.what}: ${msg}`);
  }
  u() {
    const b = this.b;
    if (this.pos >= this.end) throw this.fail("truncated (payload ends before its last value)");
    let x = b[this.pos++];
    if (x < 0x80) return x;
    let v = x & 0x7f;
    let mul = 128;
    for (let i = 1; i < 5; i++) {
      if (this.pos >= this.end) throw this.fail("truncated (payload ends inside a varint)");
      x = b[this.pos++];
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 128;
    }
    throw this.fail(`varint at byte ${this.pos - 5} is longer than 5 bytes`);
  }
  z() {
    const u = this.u();
    return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
  }
  limit(limit, name) {
    const v = this.u();
    if (v > limit) throw this.fail(`${name} ${v} is over the limit ${limit}`);
    return v;
  }
  count(limit, perItem, name) {
    const n = this.limit(limit, name);
    if (n * perItem > this.end - this.pos) throw this.fail(`truncated (${name} says ${n} but too few bytes follow)`);
    return n;
  }
  codes() {
    const n = this.count(MAX_DRIVERS, 2, "driver count");
    if (n === 0) throw this.fail("no drivers");
    const out = [];
    const dec = new TextDecoder("utf-8", { fatal: true });
    for (let i = 0; i < n; i++) {
      const len = this.count(MAX_CODE_BYTES, 1, "driver code length");
      const raw = new Uint8Array(len);
      for (let k = 0; k < len; k++) {
        const c = this.u();
        if (c > 255) throw this.fail("driver code byte out of range");
        raw[k] = c;
      }
      try {
        out.push(dec.decode(raw));
      } catch {
        throw this.fail("driver code is not UTF-8");
      }
    }
    if (new Set(out).size !== out.length) throw this.fail("driver codes repeat");
    return out;
  }
  weather() {
    const n = this.count(MAX_WEATHER_FIELDS, 2, "weather field count");
    const out = [];
    for (let i = 0; i < n; i++) out.push([this.limit(255, "weather field id"), this.z()]);
    return out;
  }
}

function readHeader(b, pos) {
  const n = b.length - pos;
  if (n < 2) throw new DecodeError(`truncated: ${n} bytes where a payload header (2 bytes) was expected`);
  if (b[pos] !== MAGIC) {
    throw new DecodeError(`not a compact payload: first byte 0x${b[pos].toString(16).padStart(2, "0")}, expected 0xc1`);
  }
  const version = b[pos + 1] >> 4;
  const kind = b[pos + 1] & 0x0f;
  if (version !== VERSION) throw new DecodeError(`compact payload version ${version}, this decoder reads version ${VERSION}`);
  if (kind > KIND_CHUNK) throw new DecodeError(`unknown payload kind ${kind}`);
  return kind;
}

function checkSize(b) {
  if (b.length > MAX_PAYLOAD_BYTES) throw new DecodeError(`payload of ${b.length} bytes is over the ${MAX_PAYLOAD_BYTES}-byte limit`);
}

function weatherObject(w) {
  const out = {};
  for (const [id, v] of w) if (WEATHER_NAMES[id]) out[WEATHER_NAMES[id]] = v / 10;
  return out;
}

const ms = (q) => (q === NULL ? null : q / 1000);

/** A frame object from integer columns `cols[name]` at `row` (index row * nd + d). */
function buildFrame(frameIndex, tMs, lap, codes, cols, row, weather) {
  const nd = codes.length;
  const { x, y, speed, gear, lap: dlap, position, tyre, tyre_age, throttle, brake, drs, dist, rel_dist,
    race_progress, gap, interval, lap_time, sector1, sector2, sector3, status } = cols;
  const drivers = {};
  for (let d = 0, i = row * nd; d < nd; d++, i++) {
    // One literal with every key in wire order: a single hidden class for all cars (fast in V8).
    drivers[codes[d]] = {
      x: x[i] / 100,
      y: y[i] / 100,
      speed: speed[i] / 10,
      gear: gear[i],
      lap: dlap[i],
      position: position[i],
      tyre: tyre[i],
      tyre_age: tyre_age[i],
      throttle: throttle[i],
      brake: brake[i],
      drs: drs[i],
      dist: dist[i] / 100,
      rel_dist: rel_dist[i] / 100000,
      race_progress: race_progress[i] / 100000,
      gap: ms(gap[i]),
      interval: ms(interval[i]),
      lap_time: ms(lap_time[i]),
      sector1: ms(sector1[i]),
      sector2: ms(sector2[i]),
      sector3: ms(sector3[i]),
      status: STATUS_LABELS[status[i]] ?? status[i],
    };
  }
  const frame = { frame_index: frameIndex, t: tMs / 1000, lap, drivers };
  if (weather && weather.length) frame.weather = weatherObject(weather);
  return frame;
}

// -- compact frames ---------------------------------------------------------------------------

function readKey(b, pos) {
  const r = new Reader(b, pos + 2, b.length, "keyframe");
  const k = r.u();
  const codes = r.codes();
  const nd = codes.length;
  const key = { frame_index: k, codes, t: r.z(), t_rate: r.z(), lap: r.z(), q: {}, rates: {}, weather: null };
  for (const c of FAST) {
    const v = new Float64Array(nd);
    const rt = new Float64Array(nd);
    for (let d = 0; d < nd; d++) v[d] = r.z();
    for (let d = 0; d < nd; d++) rt[d] = r.z();
    key.q[c.name] = v;
    key.rates[c.name] = rt;
  }
  for (const c of SLOW) {
    const v = new Float64Array(nd);
    for (let d = 0; d < nd; d++) v[d] = r.z();
    key.q[c.name] = v;
  }
  key.weather = r.weather();
  return { key, pos: r.pos };
}

function readDelta(b, pos, key) {
  const r = new Reader(b, pos + 2, b.length, "delta frame");
  const i = r.u();
  const n = r.u();
  if (n === 0 || n > i) throw r.fail(`keyframe offset ${n} is not valid for frame ${i}`);
  const k = i - n;
  if (!key || key.frame_index !== k) {
    throw new MissingKeyframe(`delta frame ${i} needs keyframe ${k} (decoder holds ${key ? key.frame_index : "none"})`);
  }
  const nd = key.codes.length;
  const t = key.t + n * key.t_rate + r.z();
  const lap = key.lap + r.z();
  const cols = {};
  for (const c of FAST) {
    const base = key.q[c.name];
    const rt = key.rates[c.name];
    const v = new Float64Array(nd);
    for (let d = 0; d < nd; d++) v[d] = base[d] + n * rt[d] + r.z();
    cols[c.name] = v;
  }
  for (const c of SLOW) cols[c.name] = Float64Array.from(key.q[c.name]);
  const nChanges = r.count(nd * SLOW.length, 3, "change count");
  for (let e = 0; e < nChanges; e++) {
    const d = r.u();
    const id = r.u();
    const v = r.z();
    if (d >= nd || id < 10 || id > 20) throw r.fail(`change for driver ${d}, channel ${id} is out of range`);
    cols[CHANNELS[id].name][d] = v;
  }
  return { frame: buildFrame(i, t, lap, key.codes, cols, 0, null), pos: r.pos };
}

/**
 * Decode one message of compact frames. Returns {frame, key}: the frame to show (the last
 * payload in the message) and the keyframe state to pass next time.
 */
export function decodeCompact(buf, key = null) {
  const b = bytesOf(buf);
  checkSize(b);
  let pos = 0;
  let frame = null;
  while (true) {
    const kind = readHeader(b, pos);
    if (kind === KIND_KEY) {
      const out = readKey(b, pos);
      key = out.key;
      frame = buildFrame(key.frame_index, key.t, key.lap, key.codes, key.q, 0, key.weather);
      pos = out.pos;
    } else if (kind === KIND_DELTA) {
      const out = readDelta(b, pos, key);
      frame = out.frame;
      pos = out.pos;
    } else {
      throw new DecodeError(`expected a compact frame, got a ${KIND_NAMES[kind]}`);
    }
    if (pos === b.length) return { frame, key };
  }
}

/** Stateful compact decoder: keeps the last keyframe. */
export class CompactDecoder {
  constructor() {
    this.key = null;
  }
  decode(buf) {
    const { frame, key } = decodeCompact(buf, this.key);
    this.key = key;
    return frame;
  }
}

// -- chunks -----------------------------------------------------------------------------------

let CRC_TABLE = null;
function crc32(b, end) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c;
    }
  }
  let c = -1;
  for (let i = 0; i < end; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

const u32 = (b, p) => (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;

/** Byte length of the chunk at `pos` (its length field), checked against the bytes there. */
export function chunkLength(buf, pos = 0) {
  const b = bytesOf(buf);
  const kind = readHeader(b, pos);
  if (kind !== KIND_CHUNK) throw new DecodeError(`expected a chunk, got a ${KIND_NAMES[kind]}`);
  if (b.length - pos < 6) throw new DecodeError(`chunk: truncated (${b.length - pos} bytes)`);
  const n = u32(b, pos + 2);
  if (n < 12 || n > MAX_PAYLOAD_BYTES) throw new DecodeError(`chunk: length field ${n} is not valid`);
  if (n > b.length - pos) throw new DecodeError(`chunk: truncated (${b.length - pos} of ${n} bytes)`);
  return n;
}

/** Decode a raw chunk into integer columns (see the module comment). */
export function decodeChunkColumns(buf) {
  const b = bytesOf(buf);
  checkSize(b);
  const n = chunkLength(b, 0);
  if (n !== b.length) throw new DecodeError(`chunk: ${b.length - n} unexpected bytes after the chunk`);
  const end = b.length - 4;
  if (crc32(b, end) !== u32(b, end)) throw new DecodeError("chunk: CRC-32 mismatch (truncated or corrupted)");
  const r = new Reader(b, 6, end, "chunk");
  const first = r.u();
  const nf = r.limit(MAX_CHUNK_FRAMES, "frame count");
  if (nf === 0) throw r.fail("no frames");
  const codes = r.codes();
  const nd = codes.length;
  if (end - r.pos < nf * (2 + FAST.length * nd) + SLOW.length * nd + 2) {
    throw r.fail("truncated (too few values for its frames and drivers)");
  }
  const t = new Float64Array(nf);
  const lap = new Float64Array(nf);
  readColumn(r, t, nf, 1, 0, 2);
  readColumn(r, lap, nf, 1, 0, 1);
  const columns = {};
  for (const c of FAST) {
    const col = new Float64Array(nf * nd);
    for (let d = 0; d < nd; d++) readColumn(r, col, nf, nd, d, c.order);
    columns[c.name] = col;
  }
  for (const c of SLOW) {
    const col = new Float64Array(nf * nd);
    for (let d = 0; d < nd; d++) col[d] = r.z();
    columns[c.name] = col;
  }
  for (const c of SLOW) {
    const col = columns[c.name];
    for (let j = 1; j < nf; j++) col.copyWithin(j * nd, 0, nd);
  }
  const nChanges = r.count(nf * nd * SLOW.length, 4, "change count");
  let prev = 1;
  for (let e = 0; e < nChanges; e++) {
    const j = r.u();
    const d = r.u();
    const id = r.u();
    const v = r.z();
    if (d >= nd || id < 10 || id > 20 || j < prev || j >= nf) {
      throw r.fail(`change at frame ${j} for driver ${d}, channel ${id} is out of range or out of order`);
    }
    const col = columns[CHANNELS[id].name];
    for (let jj = j; jj < nf; jj++) col[jj * nd + d] = v;
    prev = j;
  }
  const weather = r.weather();
  if (r.pos !== end) throw r.fail(`${end - r.pos} unexpected bytes after the chunk`);
  return { first_frame: first, n_frames: nf, codes, t, lap, columns, weather };
}

/** One column of `nf` values (stride `stride`, offset `off`): first value, then order-1/2 deltas. */
function readColumn(r, out, nf, stride, off, order) {
  let v = r.z();
  out[off] = v;
  if (nf < 2) return;
  let step = r.z();
  v += step;
  out[stride + off] = v;
  for (let j = 2; j < nf; j++) {
    const c = r.z();
    if (order === 2) step += c;
    else step = c;
    v += step;
    out[j * stride + off] = v;
  }
}

/** Decode raw chunks back to back (a `?from=K&count=M` response body, after Content-Encoding). */
export function decodeChunks(buf) {
  const b = bytesOf(buf);
  const frames = [];
  for (let pos = 0; pos < b.length; ) {
    const n = chunkLength(b, pos);
    for (const f of decodeChunk(b.subarray(pos, pos + n))) frames.push(f);
    pos += n;
  }
  return frames;
}

/** Decode a raw chunk into its frames. */
export function decodeChunk(buf) {
  const c = decodeChunkColumns(buf);
  const frames = new Array(c.n_frames);
  for (let j = 0; j < c.n_frames; j++) {
    frames[j] = buildFrame(c.first_frame + j, c.t[j], c.lap[j], c.codes, c.columns, j, j === 0 ? c.weather : null);
  }
  return frames;
}

// -- messages ---------------------------------------------------------------------------------

function isGzip(b) {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/** A synchronous decoder for raw binary messages (compact frames or chunks): buf -> [frame, ...]. */
export function createDecoder() {
  const compact = new CompactDecoder();
  return (buf) => {
    const b = bytesOf(buf);
    if (isGzip(b)) throw new DecodeError("gzip-compressed chunk: use createAsyncDecoder()");
    if (b.length >= 2 && b[0] === MAGIC && (b[1] & 0x0f) === KIND_CHUNK) return decodeChunk(b);
    return [compact.decode(b)];
  };
}

async function gunzip(b) {
  if (typeof DecompressionStream !== "function") throw new DecodeError("this runtime cannot inflate gzip");
  const parts = [];
  let size = 0;
  try {
    const reader = new Blob([b]).stream().pipeThrough(new DecompressionStream("gzip")).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > MAX_PAYLOAD_BYTES) {
        reader.cancel().catch(() => {});
        throw new DecodeError(`inflated chunk is over the ${MAX_PAYLOAD_BYTES}-byte limit`);
      }
      parts.push(value);
    }
  } catch (e) {
    if (e instanceof DecodeError) throw e;
    throw new DecodeError(`gzip: ${e && e.message ? e.message : e}`);
  }
  const out = new Uint8Array(size);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** An async decoder that also inflates gzip-compressed chunks; results resolve in call order. */
export function createAsyncDecoder() {
  const sync = createDecoder();
  let last = Promise.resolve();
  return (buf) => {
    const b = bytesOf(buf);
    const job = last.then(async () => sync(isGzip(b) ? await gunzip(b) : b));
    last = job.catch(() => {});
    return job;
  };
}
