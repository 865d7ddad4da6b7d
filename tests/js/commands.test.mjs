// Node tests of the viewer's commands and keys (src/racecast/viewer/commands.js, keys.js), run by
// tests/test_viewer_js.py:  node --test tests/js/commands.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { Commands } from "../../src/racecast/viewer/commands.js";
import { keyAction, nearestSpeed, speedStep } from "../../src/racecast/viewer/keys.js";

function wire() {
  const out = [];
  return { out, cmd: new Commands((m) => out.push(m)) };
}

test("seeks are coalesced: one in flight, only the newest target waits, sent when the reply comes", () => {
  const { out, cmd } = wire();
  cmd.seek(100);
  cmd.seek(200);
  cmd.seek(300);
  assert.deepEqual(out, [{ action: "seek", frame: 100 }]);
  assert.ok(cmd.pending("seek"));
  assert.equal(cmd.target(5), 300, "steps add up from the newest target");
  const r = cmd.onState({ type: "state", seq: 1, frame: 100, playing: false, speed: 1 });
  assert.equal(r.kind, "seek");
  assert.equal(r.adopt, false, "a newer seek is in flight: the controls keep the user's word");
  assert.deepEqual(out, [{ action: "seek", frame: 100 }, { action: "seek", frame: 300 }]);
  const r2 = cmd.onState({ type: "state", seq: 2, frame: 300, playing: false, speed: 1 });
  assert.deepEqual(r2, { kind: "seek", adopt: true });
  assert.equal(cmd.pending("seek"), false);
  assert.equal(cmd.target(42), 42);
});

test("replies are matched in order; a repeated seq (opening state, end of replay) answers nothing", () => {
  const { cmd } = wire();
  cmd.play();
  cmd.speed(4);
  assert.equal(cmd.onState({ seq: 0, playing: false, speed: 1 }).kind, null, "opening state");
  assert.equal(cmd.onState({ seq: 1, playing: true, speed: 1 }).kind, "play");
  const last = cmd.onState({ seq: 2, playing: true, speed: 4 });
  assert.deepEqual(last, { kind: "speed", adopt: true });
  assert.deepEqual(cmd.want, { playing: true, speed: 4 });
  const end = cmd.onState({ seq: 2, playing: false, speed: 4, ended: true });
  assert.deepEqual(end, { kind: null, adopt: true }, "the end of the replay is adopted though it answers nothing");
  assert.equal(cmd.want.playing, false);
});

test("an error reply takes its command off the queue; a new connection forgets the queue", () => {
  const { out, cmd } = wire();
  cmd.seek(10);
  cmd.seek(20);
  assert.equal(cmd.replied(), "seek", "refused");
  assert.deepEqual(out.at(-1), { action: "seek", frame: 20 }, "the coalesced target goes out");
  cmd.pause();
  cmd.reset();
  assert.equal(cmd.pending("pause"), false);
  assert.equal(cmd.onState({ seq: 1, playing: false }).kind, null, "nothing awaited on the new connection");
});

test("a reconnect restores position, play state and speed", () => {
  const { out, cmd } = wire();
  cmd.speed(16);
  cmd.play();
  cmd.seek(700);
  cmd.seek(900); // 900 waits behind 700
  cmd.reset(); // the socket dropped
  const f = cmd.takeResume(123);
  assert.equal(f, 900);
  assert.equal(cmd.takeResume(123), 123, "forgotten once taken");
  out.length = 0;
  cmd.restore(f);
  assert.deepEqual(out, [{ action: "seek", frame: 900 }, { action: "play", speed: 16 }]);
  cmd.pause();
  out.length = 0;
  cmd.restore(5);
  assert.deepEqual(out, [{ action: "seek", frame: 5 }, { action: "speed", speed: 16 }]);
});

test("a lap seek drops the coalesced target", () => {
  const { out, cmd } = wire();
  cmd.seek(1);
  cmd.seek(2);
  cmd.seekLap(7);
  assert.deepEqual(out.at(-1), { action: "seek", lap: 7 });
  cmd.onState({ seq: 1 });
  assert.equal(out.length, 2, "the dropped target 2 is never sent");
});

test("keys: play, steps, speeds, events; none while typing or with modifiers", () => {
  const k = (key, more = {}) => keyAction({ key, ...more }, 1);
  assert.deepEqual(k(" "), ["togglePlay"]);
  assert.deepEqual(k("ArrowLeft", { shiftKey: true }), ["step", -10]);
  assert.deepEqual(k("ArrowRight"), ["step", 1]);
  assert.deepEqual(k("ArrowUp"), ["speed", 2]);
  assert.deepEqual(keyAction({ key: "ArrowDown" }, 0.25), ["speed", 0.25], "clamped at the slowest");
  assert.deepEqual(keyAction({ key: "ArrowUp" }, 64), ["speed", 64], "clamped at the fastest");
  assert.deepEqual(k("3"), ["speed", 16]);
  assert.deepEqual(k("]"), ["event", 1, false]);
  assert.deepEqual(k(","), ["event", -1, true]);
  assert.deepEqual(k("C"), ["charts"]);
  assert.deepEqual(k("Escape", { tag: "INPUT" }), ["escape"], "Escape works everywhere");
  assert.equal(k(" ", { tag: "INPUT" }), null);
  assert.equal(k(" ", { tag: "BUTTON" }), null, "Space activates the focused button");
  assert.equal(k("c", { ctrlKey: true }), null);
  assert.equal(k("x"), null);
});

test("speed presets: the nearest to any speed, steps from it", () => {
  assert.equal(nearestSpeed(2.5), 2);
  assert.equal(nearestSpeed(3), 4, "nearest on a log scale");
  assert.equal(nearestSpeed(50), 64);
  assert.equal(speedStep(2.5, 1), 4);
  assert.equal(speedStep(2.5, -1), 1);
});
