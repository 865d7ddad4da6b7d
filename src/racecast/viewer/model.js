// Replay metadata, normalised once so the widgets read one shape whatever the server sends
// (the bundle manifest's keys, or the seed protocol's driver_colors / track_geometry / track_statuses).

import { statusCode } from "./format.js";

const pick = (o, ...keys) => {
  for (const k of keys) if (o && o[k] != null) return o[k];
  return undefined;
};

function hexColor(c) {
  if (typeof c === "string") return c.startsWith("#") ? c : `#${c}`;
  if (Array.isArray(c) && c.length >= 3) return "#" + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
  return "#8b93a7";
}

function drivers(raw) {
  let list = pick(raw, "drivers");
  if (Array.isArray(list) && list.length && typeof list[0] === "object") {
    return list.map((d) => ({
      code: d.code,
      number: d.number ?? null,
      name: d.name ?? d.code,
      team: d.team ?? "",
      color: hexColor(d.color ?? d.rgb),
    }));
  }
  // Seed form: maps keyed by driver code.
  const colors = pick(raw, "driver_colors") ?? {};
  const numbers = pick(raw, "driver_numbers") ?? {};
  const teams = pick(raw, "driver_teams") ?? {};
  const names = pick(raw, "driver_names") ?? {};
  const codes = Array.isArray(list) ? list : Object.keys(colors);
  return codes.map((code) => ({
    code,
    number: numbers[code] ?? null,
    name: names[code] ?? code,
    team: teams[code] ?? "",
    color: hexColor(colors[code]),
  }));
}

function geometry(raw) {
  const g = pick(raw, "geometry", "track_geometry");
  if (!g || !Array.isArray(g.centerline_x) || g.centerline_x.length < 2) return null;
  const arr = (k) => (Array.isArray(g[k]) ? g[k] : []);
  return {
    cx: arr("centerline_x"), cy: arr("centerline_y"),
    ix: arr("inner_x"), iy: arr("inner_y"),
    ox: arr("outer_x"), oy: arr("outer_y"),
    px: arr("pit_lane_x"), py: arr("pit_lane_y"),
    length: Number(g.length) || 0,
    sectors: Array.isArray(g.sectors) ? g.sectors.map(Number) : [],
    drsZones: Array.isArray(g.drs_zones) ? g.drs_zones.map((z) => (Array.isArray(z) ? z.map(Number) : [Number(z.start), Number(z.end)])) : [],
    startFinish: Array.isArray(g.start_finish) ? g.start_finish.map(Number) : null,
    rotation: Number(g.rotation) || 0,
  };
}

function trackStatus(raw) {
  const list = pick(raw, "track_status", "track_statuses") ?? [];
  return list
    .map((p) => ({
      start: Number(pick(p, "start", "start_time", "t")),
      end: Number(pick(p, "end", "end_time") ?? Infinity),
      code: statusCode(pick(p, "code", "status")),
    }))
    .filter((p) => Number.isFinite(p.start))
    .sort((a, b) => a.start - b.start);
}

function messages(raw) {
  const list = pick(raw, "messages", "race_control", "race_control_messages") ?? [];
  return list
    .map((m) => ({
      t: Number(pick(m, "t", "time")),
      message: String(pick(m, "message", "text") ?? ""),
      category: String(m.category ?? "Other"),
      lap: m.lap ?? null,
      driver: m.driver ?? null,
    }))
    .filter((m) => Number.isFinite(m.t))
    .sort((a, b) => a.t - b.t);
}

function pitStops(raw) {
  const list = pick(raw, "pit_stops") ?? [];
  return list
    .map((p) => ({ ...p, t_in: Number(pick(p, "t_in", "t")), t_out: Number(pick(p, "t_out", "t_in", "t")) }))
    .filter((p) => Number.isFinite(p.t_in));
}

/** Build the viewer's race description from the server's metadata (`total_frames` wins over `frames`). */
export function normalizeMeta(raw, framesHint) {
  const ev = pick(raw, "event") ?? {};
  const fps = Number(pick(raw, "fps")) || 25;
  const nFrames = Number(pick(raw, "total_frames", "n_frames", "frames") ?? framesHint) || 1;
  const t0 = Number(pick(raw, "t0")) || 0;
  const duration = Number(pick(raw, "duration")) || (nFrames - 1) / fps;
  const ds = drivers(raw);
  const weather = pick(raw, "weather");
  return {
    id: pick(raw, "id"),
    title: pick(raw, "title") ?? ev.name ?? "Replay",
    event: ev,
    fps,
    nFrames,
    t0,
    duration,
    totalLaps: Number(pick(raw, "total_laps")) || 0,
    maxLap: Number(pick(raw, "max_lap")) || Number(pick(raw, "total_laps")) || 0, // last lap the leader starts
    drivers: ds,
    byCode: new Map(ds.map((d) => [d.code, d])),
    geometry: geometry(raw),
    trackStatus: trackStatus(raw),
    messages: messages(raw),
    pitStops: pitStops(raw),
    weather: weather && Array.isArray(weather.t) ? weather : null,
    grid: pick(raw, "grid") ?? null,
    results: pick(raw, "results") ?? ev.results ?? null, // end-of-session result (official or the order at the line)
    qualifying: pick(raw, "qualifying") ?? ev.qualifying ?? null, // knockout segments: [{name, start, end}]
    lapStarts: pick(raw, "lap_starts") ?? null,
  };
}

/** Track status code in force at session time `t`. */
export function statusAt(meta, t) {
  let code = 1;
  for (const p of meta.trackStatus) {
    if (p.start > t) break;
    if (t < p.end) code = p.code;
  }
  return code;
}

/** Weather sample at session time `t` from the metadata series (frames carry it once a second too). */
export function weatherAt(meta, t) {
  const w = meta.weather;
  if (!w || !w.t.length) return null;
  let i = 0;
  while (i + 1 < w.t.length && w.t[i + 1] <= t) i++;
  const out = {};
  for (const [k, v] of Object.entries(w)) if (k !== "t" && Array.isArray(v)) out[k] = v[i];
  return out;
}

/** Number of race-control messages issued at or before `t` (messages are sorted). */
export function messagesUntil(meta, t) {
  const ms = meta.messages;
  let lo = 0, hi = ms.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ms[mid].t <= t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

const SEED_STATUS = { Running: "running", Pit: "pit", Retired: "out", Finished: "finished", DNS: "dns" };

/**
 * A seed gap in model terms: the seed sends 0 for "unknown" (and for the leader), so 0 is null
 * behind the leader; a known gap of exactly 0 comes as -0 (racecast.bundle.msgpack_frames).
 */
export function seedGap(v, lead) {
  if (v == null || (v === 0 && !Object.is(v, -0))) return lead ? 0 : null;
  return v === 0 ? 0 : v;
}

/**
 * A msgpack frame (the seed's units and codes: x/y in 1/10 m, tyre 0 SOFT..4 WET, FastF1 DRS codes,
 * brake 0-1, race_progress in metres, gap_to_leader/gap_to_previous) in this viewer's model units
 * (compact and chunk frames already are). Mirrors racecast.bundle.msgpack_frames.model_car.
 */
export function modelFrame(f, meta) {
  const length = (meta && meta.geometry && meta.geometry.length) || 0;
  const drivers = {};
  for (const [code, c] of Object.entries(f.drivers || {})) {
    const lead = c.position === 1;
    drivers[code] = {
      ...c,
      x: c.x / 10,
      y: c.y / 10,
      tyre: c.tyre + 1,
      drs: c.drs >= 10 ? 2 : c.drs === 8 ? 1 : 0,
      brake: c.brake * 100,
      race_progress: length > 0 ? c.race_progress / length : 0,
      gap: seedGap(c.gap_to_leader, lead),
      interval: seedGap(c.gap_to_previous, lead),
      status: SEED_STATUS[c.status] ?? c.status,
    };
  }
  return { ...f, drivers };
}
