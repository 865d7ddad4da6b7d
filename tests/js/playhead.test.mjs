// Node tests of chunk mode's playhead and chunk buffer (src/racecast/viewer/playhead.js),
// run by tests/test_playhead_js.py:  node --test tests/js/playhead.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { ChunkBuffer, Playhead } from "../../src/racecast/viewer/playhead.js";

const PER = 25;
const chunk = (k, n = PER) => Array.from({ length: n }, (_, j) => ({ frame_index: k * PER + j }));

test("the playhead advances frame + elapsed x fps x speed from its anchor", () => {
  const ph = new Playhead(3000, 25);
  ph.set(100, true, 1, 1000);
  assert.equal(ph.at(1000), 100);
  assert.equal(ph.at(2000), 125);
  assert.equal(ph.at(500), 100, "never before its anchor");
  ph.set(100, true, 4, 1000);
  assert.equal(ph.at(2000), 200);
  ph.set(100, false, 4, 1000);
  assert.equal(ph.at(9000), 100, "paused: stays");
});

test("the playhead is clamped to the replay and stops on the last frame", () => {
  const ph = new Playhead(300, 25);
  ph.set(290, true, 1, 0);
  assert.equal(ph.at(10_000), 299);
  assert.ok(ph.atEnd(10_000));
  ph.set(5000, true, 1, 0);
  assert.equal(ph.frame, 299);
  assert.equal(ph.playing, false, "playing from the last frame means nothing to play");
  ph.set(-5, false, 1, 0);
  assert.equal(ph.at(0), 0);
});

test("a speed change keeps the position (no jump) and a bad speed is ignored", () => {
  const ph = new Playhead(3000, 25);
  ph.set(0, true, 1, 0);
  ph.retime(4, 1000); // at frame 25
  assert.equal(ph.at(1000), 25);
  assert.equal(ph.at(2000), 125);
  ph.set(125, true, NaN, 2000);
  assert.equal(ph.speed, 4);
});

test("the buffer finds frames of the chunks it holds", () => {
  const b = new ChunkBuffer(PER, 10, 3000);
  assert.ok(b.add(chunk(0), 0));
  assert.ok(b.add(chunk(1), 0));
  assert.equal(b.get(0).frame_index, 0);
  assert.equal(b.get(37).frame_index, 37);
  assert.equal(b.get(50), undefined);
  assert.ok(!b.has(50));
});

test("chunks behind the playhead are dropped, on arrival and as it moves on (one behind is kept)", () => {
  const b = new ChunkBuffer(PER, 10, 3000);
  for (let k = 0; k < 5; k++) b.add(chunk(k), 0);
  b.trim(3 * PER + 3); // playhead in chunk 3
  assert.deepEqual(b.held(), [2, 3, 4]);
  assert.ok(!b.add(chunk(0), 3 * PER + 3), "a late chunk from before a seek back is not held");
  assert.ok(!b.add(chunk(1), 3 * PER + 3));
  assert.deepEqual(b.held(), [2, 3, 4]);
});

test("the buffer is bounded: chunks too far ahead are refused", () => {
  const b = new ChunkBuffer(PER, 10, 30_000);
  let kept = 0;
  for (let k = 0; k < 100; k++) kept += b.add(chunk(k), 0) ? 1 : 0;
  assert.equal(kept, 11);
  assert.ok(b.size <= b.maxChunks);
  assert.ok(!b.add(chunk(500), 0), "a chunk far ahead (e.g. from before a seek back) is not held");
  b.trim(40 * PER);
  assert.equal(b.size, 0);
});

test("only whole chunks on the replay's grid are held; the last one may be shorter", () => {
  const b = new ChunkBuffer(PER, 10, 110); // chunks 0..4, the last of 10 frames
  assert.ok(!b.add(chunk(0, 1), 0), "a single frame is not a chunk");
  assert.ok(!b.add([{ frame_index: 3 }, { frame_index: 4 }], 0), "not on the chunk grid");
  assert.ok(!b.add(chunk(1).reverse(), 0), "frames out of order");
  assert.ok(!b.add(chunk(4, 11), 100), "longer than the replay");
  assert.ok(b.add(chunk(4, 10), 100));
  assert.equal(b.get(109).frame_index, 109);
  assert.equal(b.dropped, 4);
});

test("the buffer tells the next chunk held after a gap", () => {
  const b = new ChunkBuffer(PER, 10, 3000);
  b.add(chunk(3), 50);
  b.add(chunk(6), 50);
  assert.equal(b.nextAfter(50), 75);
  assert.equal(b.nextAfter(80), 150);
  assert.equal(b.nextAfter(150), undefined);
  b.epoch += 1; // the server restarted its sequence (a seek): chunks held from before prove nothing
  assert.equal(b.nextAfter(50), undefined);
  assert.equal(b.get(80).frame_index, 80, "but they are still shown");
  b.add(chunk(5), 50);
  assert.equal(b.nextAfter(50), 125);
});
