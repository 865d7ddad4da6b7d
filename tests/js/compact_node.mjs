// Node driver for the JS decoder (src/racecast/viewer/compact.js), run by tests/test_compact_js.py
// and benchmarks/bandwidth.py:  node compact_node.mjs MODE BUNDLE_DIR
//   decode  every compact frame (in order) and every chunk (raw and gzip) as JSON on stdout
//   fuzz    truncated and mutated payloads: counts of DecodeError; exit 1 on any other error
//   bench   decode time per frame (compact, chunks) as JSON
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { performance } from "node:perf_hooks";
import {
  CompactDecoder, DecodeError, createAsyncDecoder, decodeChunk, decodeChunkColumns, decodeChunks, decodeCompact,
} from "../../src/racecast/viewer/compact.js";

const [mode, dir] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));

/** Header length of a pre-framed item of `size` bytes (docs/architecture.md, "Bundle format"). */
const wsHeader = (size) => (size < 128 ? 2 : size < 65540 ? 4 : 10);

/** A stream's payloads as Uint8Array views (offsets from the .npy index, little-endian uint64;
 *  pre-framed streams lose their WebSocket header, as a browser's WebSocket would strip it). */
function stream(name) {
  const info = manifest.streams[name];
  const data = new Uint8Array(readFileSync(join(dir, info.data)));
  const npy = readFileSync(join(dir, info.index));
  const major = npy[6];
  const hlen = major === 1 ? npy.readUInt16LE(8) : npy.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + hlen;
  const off = [];
  for (let i = 0; i <= info.count; i++) off.push(Number(npy.readBigUInt64LE(start + 8 * i)));
  const skip = info.framing === "websocket" ? (i) => wsHeader(off[i + 1] - off[i]) : () => 0;
  return Array.from({ length: info.count }, (_, i) => data.subarray(off[i] + skip(i), off[i + 1]));
}

async function decodeAll() {
  const dec = new CompactDecoder();
  const compact = stream("compact").map((p) => dec.decode(p));
  const chunks = stream("chunks").map((p) => decodeChunk(p));
  const adec = createAsyncDecoder();
  const gz = await Promise.all(stream("chunks.gz").map((p) => adec(p)));
  // A keyframe then a delta of its span in one message, with no state before.
  const s = stream("compact");
  const both = new Uint8Array(s[25].length + s[30].length);
  both.set(s[25]);
  both.set(s[30], s[25].length);
  const combined = decodeCompact(both, null);
  const raw = stream("chunks");
  const many = new Uint8Array(raw[1].length + raw[2].length);
  many.set(raw[1]);
  many.set(raw[2], raw[1].length);
  const multi = decodeChunks(many);
  process.stdout.write(JSON.stringify({ compact, chunks, gz, multi, combined: combined.frame, combined_key: combined.key.frame_index }));
}

function expectDecodeError(fn, what) {
  try {
    fn();
    return false;
  } catch (e) {
    if (!(e instanceof DecodeError)) {
      console.error(`${what}: ${e && e.stack}`);
      process.exit(1);
    }
    return true;
  }
}

async function fuzz() {
  const s = stream("compact");
  const chunks = stream("chunks");
  const key = decodeCompact(s[0]).key;
  let errors = 0, decoded = 0, truncated = 0;
  const payloads = [s[0], s[3], chunks[1]];
  for (const p of payloads) {
    for (let n = 0; n < p.length; n++) {
      const part = p.slice(0, n);
      const isChunk = p[1] === 0x12;
      if (!expectDecodeError(() => (isChunk ? decodeChunk(part) : decodeCompact(part, key)), `prefix ${n}`)) {
        console.error(`a ${n}-byte prefix decoded without error`);
        process.exit(1);
      }
      truncated++;
    }
  }
  let seed = 12345;
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
  for (let it = 0; it < 3000; it++) {
    const src = [s[25], s[27], chunks[2]][it % 3];
    const b = Uint8Array.from(src);
    const flips = 1 + rand(4);
    for (let k = 0; k < flips; k++) b[rand(b.length)] = rand(256);
    const isChunk = it % 3 === 2;
    const k25 = decodeCompact(s[25]).key;
    if (expectDecodeError(() => (isChunk ? decodeChunk(b) : decodeCompact(b, k25)), `mutation ${it}`)) errors++;
    else {
      decoded++;
      if (isChunk && !b.every((x, i) => x === src[i])) {
        console.error("a changed chunk decoded: its CRC should have failed");
        process.exit(1);
      }
    }
  }
  for (let it = 0; it < 2000; it++) {
    const b = new Uint8Array(rand(300));
    for (let i = 0; i < b.length; i++) b[i] = rand(256);
    if (b.length > 1 && it % 2) (b[0] = 0xc1), (b[1] = 0x10 + (it % 3));
    expectDecodeError(() => decodeCompact(b), "random compact") || decoded++;
    expectDecodeError(() => decodeChunk(b), "random chunk") || decoded++;
  }
  expectDecodeError(() => decodeCompact(new Uint8Array((4 << 20) + 1)), "oversized");
  const adec = createAsyncDecoder();
  let gzErrors = 0;
  for (const bad of [Uint8Array.from([0x1f, 0x8b, 1, 2, 3]), stream("chunks.gz")[0].slice(0, 20)]) {
    try {
      await adec(bad);
    } catch (e) {
      if (!(e instanceof DecodeError)) {
        console.error(`gzip: ${e && e.stack}`);
        process.exit(1);
      }
      gzErrors++;
    }
  }
  process.stdout.write(JSON.stringify({ truncated, errors, decoded, gzErrors }));
}

function bench() {
  const s = stream("compact");
  const chunks = stream("chunks");
  const time = (fn, reps) => {
    fn();
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) fn();
    return (performance.now() - t0) / reps;
  };
  const frames = s.length;
  const compactMs = time(() => {
    const d = new CompactDecoder();
    for (const p of s) d.decode(p);
  }, 5);
  const chunkMs = time(() => {
    for (const p of chunks) decodeChunk(p);
  }, 5);
  const columnsMs = time(() => {
    for (const p of chunks) decodeChunkColumns(p);
  }, 5);
  const gz = stream("chunks.gz");
  const gunzipMs = time(() => {
    for (const p of gz) gunzipSync(p);
  }, 5);
  const perFrame = (ms) => (ms * 1000) / frames;
  process.stdout.write(JSON.stringify({
    node: process.version,
    frames,
    compact_us_per_frame: perFrame(compactMs),
    chunk_us_per_frame: perFrame(chunkMs),
    chunk_columns_us_per_frame: perFrame(columnsMs),
    gunzip_us_per_frame: perFrame(gunzipMs),
  }));
}

if (mode === "decode") await decodeAll();
else if (mode === "fuzz") await fuzz();
else if (mode === "bench") bench();
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
