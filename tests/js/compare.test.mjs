// Node tests of the lap comparison's plain functions (src/racecast/viewer/compare.js), run by
// tests/test_viewer_js.py:  node --test tests/js/compare.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { compareQuery, completedLaps, frameAtDistance, indexAt, lapOptions, readout } from "../../src/racecast/viewer/compare.js";

const laps = {
  drivers: ["VER", "NOR"],
  crossing_t: { VER: [100, 190, 280, null], NOR: [101, 192, null] },
  lap_times: { VER: [95.2, 90.1, null], NOR: [96.0, 91.5, null] },
};

test("the picker offers fastest, same (second driver only) and each completed lap with its time", () => {
  assert.deepEqual(completedLaps(laps, "VER"), [{ lap: 1, time: 95.2 }, { lap: 2, time: 90.1 }, { lap: 3, time: null }]);
  assert.deepEqual(lapOptions(laps, "VER").map((o) => o.value), ["fastest", "1", "2", "3"]);
  const b = lapOptions(laps, "NOR", { same: "VER" });
  assert.deepEqual(b.map((o) => o.value), ["fastest", "same", "1", "2"]);
  assert.equal(b[1].text, "same lap as VER");
  assert.equal(b[3].text, "L2 1:31.500");
  assert.deepEqual(lapOptions(laps, "XXX").map((o) => o.value), ["fastest"], "an unknown driver: only the server can say");
});

test("the query names each driver's lap reference, escaped", () => {
  assert.equal(compareQuery(["VER", "NOR"], ["fastest", "same"]), "a=VER%3Afastest&b=NOR%3Asame");
  assert.equal(compareQuery(["A&B", "C"], [12, "3"]), "a=A%26B%3A12&b=C%3A3");
});

const cmp = {
  step: 5,
  distance: [0, 5, 10, 15],
  delta: [0, 0.05, -0.1, 0.25],
  a: { driver: "VER", lap: 2, frame: 1000, time: [0, 0.2, 0.4, 0.6], speed: [100, 200, 250, 300], throttle: [0, 60, 100, 100], brake: [100, 0, 0, 0], gear: [2, 3, 4, 5] },
  b: { driver: "NOR", lap: 2, frame: 1100, time: [0, 0.25, 0.3, 0.85], speed: [90, 190, 240, 290], throttle: [0, 50, 100, 100], brake: [100, 0, 0, 0], gear: [2, 3, 4, 5] },
};

test("the hover readout: nearest grid point, both drivers' channels and the delta", () => {
  assert.equal(indexAt(cmp, 6.9), 1);
  assert.equal(indexAt(cmp, -3), 0);
  assert.equal(indexAt(cmp, 1e6), 3);
  assert.deepEqual(readout(cmp, 3), ["0.01 km", "VER 300 km/h  T100 B0 G5", "NOR 290 km/h  T100 B0 G5", "Δ +0.250 s"]);
  assert.equal(readout(cmp, 2)[3], "Δ −0.100 s");
});

test("a click seeks to where the first driver was at that distance on that lap", () => {
  assert.equal(frameAtDistance(cmp, 0, 25), 1000);
  assert.equal(frameAtDistance(cmp, 11, 25), 1000 + 10); // at 10 m: 0.4 s into the lap
  assert.equal(frameAtDistance({ ...cmp, a: { ...cmp.a, frame: null } }, 11, 25), null);
});
