// Node tests of the viewer's msgpack-frame converter (src/racecast/viewer/model.js), run by
// tests/test_viewer_js.py:  node --test tests/js/model.test.mjs [FRAMES.msgpack]
// With a file argument (msgpack frames written by the Python encoder, length-prefixed), the
// converted gaps are printed as JSON for the Python side to compare.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Decoder } from "../../src/racecast/viewer/vendor/msgpack/Decoder.mjs";
import { modelFrame, seedGap } from "../../src/racecast/viewer/model.js";

const car = (position, gap, interval) => ({ x: 0, y: 0, tyre: 0, drs: 0, brake: 0, race_progress: 0, position, gap_to_leader: gap, gap_to_previous: interval, status: "Running" });

test("a seed gap of 0 is unknown behind the leader, 0 for the leader, and -0 is a known 0", () => {
  assert.equal(seedGap(0, false), null);
  assert.equal(seedGap(0, true), 0);
  assert.equal(seedGap(-0, false), 0);
  assert.ok(Object.is(seedGap(-0, false), 0), "a known zero reads as +0");
  assert.equal(seedGap(1.25, false), 1.25);
  assert.equal(seedGap(null, false), null);
  assert.equal(seedGap(undefined, true), 0);
});

test("modelFrame keeps a known zero gap and interval of a car behind the leader", () => {
  const f = modelFrame({ frame_index: 3, drivers: { AAA: car(1, 0, 0), BBB: car(2, -0, -0), CCC: car(3, 0, 0), DDD: car(4, 0.5, 0.5) } }, null);
  assert.deepEqual(
    Object.fromEntries(Object.entries(f.drivers).map(([c, d]) => [c, [d.gap, d.interval]])),
    { AAA: [0, 0], BBB: [0, 0], CCC: [null, null], DDD: [0.5, 0.5] },
  );
});

test("a float32 -0 on the wire decodes as -0 (the sign survives the vendored decoder)", () => {
  const v = new Decoder().decode(Uint8Array.from([0xca, 0x80, 0, 0, 0]));
  assert.ok(Object.is(v, -0));
});

const file = process.argv[2];
if (file) {
  // Frames: u32 length + payload, repeated. Print [{code: [gap, interval]}] per frame.
  const buf = readFileSync(file);
  const out = [];
  for (let at = 0; at < buf.length;) {
    const n = buf.readUInt32BE(at);
    const f = modelFrame(new Decoder().decode(buf.subarray(at + 4, at + 4 + n)), null);
    out.push(Object.fromEntries(Object.entries(f.drivers).map(([c, d]) => [c, [d.gap, d.interval]])));
    at += 4 + n;
  }
  console.log("GAPS " + JSON.stringify(out));
}
