// Lap comparison in the charts panel: two selected drivers, the laps the lap picker chooses (each
// one's fastest, the same lap number, or any lap each), drawn from GET /api/replays/{id}/compare
// (the data path the seed-compatible telemetry endpoints share): speed, throttle, brake and gear
// along the lap distance, then the running time delta. Plain functions over plain data except
// `drawCompare` (a 2D canvas context); no DOM lookups here.

import { lapTime } from "./format.js";

/** The panels top to bottom: channel, label, share of the height, fixed y range (null: from the data). */
export const COMPARE_PANELS = [
  { key: "speed", label: "km/h", share: 0.3, range: null },
  { key: "throttle", label: "throttle %", share: 0.15, range: [0, 100] },
  { key: "brake", label: "brake %", share: 0.12, range: [0, 100] },
  { key: "gear", label: "gear", share: 0.15, range: null },
  { key: "delta", label: "Δ s", share: 0.28, range: null },
];

/** The laps `code` completed (crossed the line at their end): [{lap, time}] (time null: untimed). */
export function completedLaps(laps, code) {
  const times = laps.lap_times[code] || [];
  return (laps.crossing_t[code] || []).flatMap((t, k) => (t == null ? [] : [{ lap: k + 1, time: times[k] ?? null }]));
}

/**
 * The options of one lap picker: "fastest" (the server resolves it: compare.fastest_lap, as the
 * CLI's default), for the second driver "same" (the first one's lap number), then every lap the
 * driver completed with its time: [{value, text}].
 */
export function lapOptions(laps, code, { same = null } = {}) {
  const opts = [{ value: "fastest", text: "fastest lap" }];
  if (same) opts.push({ value: "same", text: `same lap as ${same}` });
  for (const { lap, time } of completedLaps(laps, code)) opts.push({ value: String(lap), text: `L${lap}${time != null ? ` ${lapTime(time)}` : ""}` });
  return opts;
}

/** The query of GET /api/replays/{id}/compare: drivers `codes`, lap references `refs` (a number, "fastest", "same"). */
export function compareQuery(codes, refs) {
  return `a=${encodeURIComponent(`${codes[0]}:${refs[0]}`)}&b=${encodeURIComponent(`${codes[1]}:${refs[1]}`)}`;
}

/** The y range of a panel over both laps' values (gear: whole gears; delta: symmetric around 0). */
function rangeOf(p, c) {
  if (p.range) return p.range;
  if (p.key === "delta") {
    const m = Math.max(0.1, ...c.delta.map((v) => Math.abs(v)));
    return [-m, m];
  }
  const vs = [...c.a[p.key], ...c.b[p.key]];
  if (p.key === "gear") return [0, Math.max(1, ...vs) + 0.5];
  return [0, Math.max(1, ...vs)];
}

/**
 * Draw comparison `c` (the /compare response) in the box {x0, x1, y0, y1} of `ctx` with colours
 * [ca, cb]: the five panels stacked, a shared distance axis. Returns {lines, panels, xOf} (lines
 * drawn, panels drawn, distance -> x) for the caller's hit testing and test hooks.
 */
export function drawCompare(ctx, box, c, [ca, cb]) {
  const dist = c.distance;
  const end = dist[dist.length - 1] || 1;
  const xOf = (d) => box.x0 + (d / end) * (box.x1 - box.x0);
  const H = box.y1 - box.y0;
  let y = box.y0, lines = 0;
  const line = (ys, yOf, color, stepped, width = 1.2) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    ys.forEach((v, i) => {
      const x = xOf(dist[i]), yy = yOf(v);
      if (!i) ctx.moveTo(x, yy);
      else if (stepped) { ctx.lineTo(x, yOf(ys[i - 1])); ctx.lineTo(x, yy); }
      else ctx.lineTo(x, yy);
    });
    ctx.stroke();
    lines += 1;
  };
  for (const p of COMPARE_PANELS) {
    const h = H * p.share;
    const top = y + 3, bot = y + h - 3;
    const [lo, hi] = rangeOf(p, c);
    const yOf = (v) => bot - ((Math.min(hi, Math.max(lo, v)) - lo) / Math.max(1e-9, hi - lo)) * (bot - top);
    ctx.strokeStyle = "#262b36";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(box.x0, Math.round(bot) + 0.5); ctx.lineTo(box.x1, Math.round(bot) + 0.5); ctx.stroke();
    ctx.fillStyle = "#8b93a7";
    ctx.fillText(p.label, 2, top + 9);
    if (p.key === "delta") {
      ctx.strokeStyle = "#3a4050";
      ctx.beginPath(); ctx.moveTo(box.x0, yOf(0)); ctx.lineTo(box.x1, yOf(0)); ctx.stroke();
      ctx.fillStyle = "#8b93a7";
      ctx.fillText(`±${hi.toFixed(hi < 1 ? 2 : 1)}`, 2, top + 20);
      line(c.delta, yOf, cb, false);
    } else {
      if (p.key === "speed") ctx.fillText(String(Math.round(hi)), 2, top + 20);
      line(c.a[p.key], yOf, ca, p.key === "gear", 2.6); // wider, under b: both show where they match
      line(c.b[p.key], yOf, cb, p.key === "gear");
    }
    y += h;
  }
  // distance ticks (km) under the last panel
  ctx.fillStyle = "#8b93a7";
  const stepM = end > 4000 ? 1000 : 500;
  for (let d = 0; d <= end; d += stepM) ctx.fillText(`${(d / 1000).toFixed(stepM < 1000 ? 1 : 0)} km`, xOf(d) - 8, box.y1 + 10);
  const label = (s) => `${s.driver} L${s.lap}${s.lap_time != null ? ` ${lapTime(s.lap_time)}` : ""}`;
  ctx.fillStyle = ca;
  ctx.fillText(label(c.a), box.x0 + 4, box.y0 + 10);
  ctx.fillStyle = cb;
  ctx.fillText(`${label(c.b)}  (Δ: + = ${c.b.driver} slower)`, box.x0 + 130, box.y0 + 10);
  return { lines, panels: COMPARE_PANELS.length, xOf, end };
}

/** The grid index nearest distance `d` (m) of comparison `c`. */
export function indexAt(c, d) {
  const n = c.distance.length;
  return Math.max(0, Math.min(n - 1, Math.round(d / (c.step || 5))));
}

/** What both cars do at grid index `k`: one line per driver and the delta, for the hover readout. */
export function readout(c, k) {
  const side = (s) => `${s.driver} ${Math.round(s.speed[k])} km/h  T${Math.round(s.throttle[k])} B${Math.round(s.brake[k])} G${s.gear[k]}`;
  const d = c.delta[k];
  return [`${(c.distance[k] / 1000).toFixed(2)} km`, side(c.a), side(c.b), `Δ ${d >= 0 ? "+" : "−"}${Math.abs(d).toFixed(3)} s`];
}

/** The hover cursor: a vertical line at grid index `k` and the readout beside it. */
export function drawCursor(ctx, box, c, k, xOf, [ca, cb]) {
  const x = Math.round(xOf(c.distance[k])) + 0.5;
  ctx.strokeStyle = "#c9cfdb";
  ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(x, box.y0); ctx.lineTo(x, box.y1); ctx.stroke();
  const lines = readout(c, k);
  const w = 170, h = 14 * lines.length + 6;
  const left = x + 8 + w > box.x1 ? x - 8 - w : x + 8;
  ctx.fillStyle = "rgba(16, 19, 26, 0.88)";
  ctx.fillRect(left, box.y0 + 16, w, h);
  lines.forEach((t, i) => {
    ctx.fillStyle = i === 1 ? ca : i === 2 ? cb : "#c9cfdb";
    ctx.fillText(t, left + 6, box.y0 + 30 + i * 14);
  });
}

/** The frame to seek to for a click at distance `d` along lap a of comparison `c` (needs a.frame and fps). */
export function frameAtDistance(c, d, fps) {
  const dist = c.distance;
  if (!dist.length || c.a.frame == null) return null;
  let k = 0;
  while (k + 1 < dist.length && dist[k + 1] <= d) k++;
  return c.a.frame + Math.round((c.a.time[k] || 0) * fps);
}
