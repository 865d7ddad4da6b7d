// Charts panel: race trace (gap to the leader), lap chart, lap times and tyre strategy from the
// replay's lap data (GET /api/replays/{id}/laps), linked to the replay: the current time is a
// vertical line, a click seeks there (to the clicked driver's crossing when near a line, and
// selects that driver), the selected drivers are drawn bold and the rest faint. "Compare two laps"
// (compare.js) draws two selected drivers' laps, chosen with the lap picker, channel by channel.

import { compareQuery, drawCompare, drawCursor, frameAtDistance, indexAt, lapOptions } from "./compare.js";
import { compound, esc, lapTime } from "./format.js";

export const CHARTS = { gaps: "Gap to leader", positions: "Lap chart", laptimes: "Lap times", strategy: "Tyre strategy", compare: "Compare two laps" };
const PAD = { l: 40, r: 36, t: 10, b: 20 };

/** The leader's crossing time of each lap (first car to complete it): lead[k-1] for lap k. */
export function leaderCrossings(laps) {
  const lead = [];
  for (const code of laps.drivers) {
    (laps.crossing_t[code] || []).forEach((t, k) => {
      if (t != null && (lead[k] == null || t < lead[k])) lead[k] = t;
    });
  }
  return lead;
}

/** Race time `t` as a fractional lap of the leader (0 at lights out). */
export function lapAt(laps, lead, t) {
  if (t <= laps.start_t) return 0;
  let prev = laps.start_t;
  for (let k = 0; k < lead.length; k++) {
    if (lead[k] == null) continue;
    if (t < lead[k]) return k + (t - prev) / Math.max(1e-6, lead[k] - prev);
    prev = lead[k];
  }
  return lead.length;
}

export class ChartsPanel {
  /** root: the panel (select.kind, canvas); onSeek(frame); onSelect(code, additive); selected(): codes. */
  constructor(root, meta, { onSeek, onSelect, selected }) {
    this.root = root;
    this.meta = meta;
    this.onSeek = onSeek;
    this.onSelect = onSelect;
    this.selected = selected;
    this.canvas = root.querySelector("canvas");
    this.kindSel = root.querySelector("select");
    this.kindSel.innerHTML = Object.entries(CHARTS).map(([k, v]) => `<option value="${k}">${v}</option>`).join("");
    this.kind = this.kindSel.value;
    this.laps = null;
    this.t = meta.t0;
    this.pts = []; // hit targets of the last draw: {x, y, code, frame}
    this.cmp = null; // the last lap comparison fetched: {want, data | error}
    this.cmpBox = null; // where it was drawn: {x0, x1, end} (a click seeks along lap a)
    this.pick = root.querySelector(".compare-pick");
    this.lapSel = [...this.pick.querySelectorAll("select")];
    this.lapChoice = ["fastest", "fastest"]; // per side: "fastest", "same" (b only) or a lap number
    this.pickFor = null; // the drivers the picker's options were built for
    this.lapSel.forEach((el, k) => el.addEventListener("change", () => { this.lapChoice[k] = el.value; el.blur(); this.draw(); }));
    this.kindSel.addEventListener("change", () => { this.kind = this.kindSel.value; this.kindSel.blur(); this.draw(); });
    this.canvas.addEventListener("click", (ev) => this._click(ev));
    this.hoverX = null; // compare: the pointer's x over the plot (a cursor with the values there)
    this.canvas.addEventListener("mousemove", (ev) => {
      if (this.kind !== "compare" || !this.cmpBox) return;
      this.hoverX = ev.clientX - this.canvas.getBoundingClientRect().left;
      this.draw();
    });
    this.canvas.addEventListener("mouseleave", () => {
      if (this.hoverX == null) return;
      this.hoverX = null;
      this.draw();
    });
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  async load(replayId) {
    this.replayId = replayId;
    try {
      const r = await fetch(`/api/replays/${encodeURIComponent(replayId)}/laps`);
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      this.laps = await r.json();
      this.lead = leaderCrossings(this.laps);
    } catch (err) {
      this.root.dataset.error = String(err.message || err);
      return;
    }
    this.draw();
  }

  get visible() {
    return !this.root.hidden;
  }

  /** The replay moved to race time `t`: move the marker (a cheap redraw, only while shown). */
  update(t) {
    if (Math.abs(t - this.t) < 0.5) return;
    this.t = t;
    if (this.visible && this.laps) this.draw();
  }

  _frame() {
    const W = this.canvas.clientWidth, H = this.canvas.clientHeight;
    const laps = this.laps;
    const n = Math.max(1, laps.laps);
    const x0 = this.kind === "positions" || this.kind === "strategy" ? 0 : 1;
    const xOf = (lap) => PAD.l + ((lap - x0) / Math.max(1, n - x0)) * (W - PAD.l - PAD.r);
    return { W, H, n, x0, xOf };
  }

  /** Series to draw: {code, pts: [[lap, value, frame]]} per driver, and the y range. */
  _series() {
    const L = this.laps;
    const out = [];
    for (const code of L.drivers) {
      const cf = L.crossing_frame[code] || [];
      let pts;
      if (this.kind === "positions") {
        pts = (L.positions[code] || []).map((p, k) => [k, p, k === 0 ? L.start_frame : cf[k - 1]]);
      } else if (this.kind === "gaps") {
        pts = (L.gaps[code] || []).map((g, k) => [k + 1, g, cf[k]]);
      } else {
        pts = (L.lap_times[code] || []).map((v, k) => [k + 1, v, cf[k]]);
      }
      pts = pts.filter((p) => p[1] != null && p[2] != null);
      if (pts.length) out.push({ code, pts });
    }
    const ys = out.flatMap((s) => s.pts.filter((p) => this.kind !== "laptimes" || p[0] > 1).map((p) => p[1])).sort((a, b) => a - b);
    let lo = 0, hi = 1, invert = false;
    if (this.kind === "positions") { lo = 0.5; hi = L.drivers.length + 0.5; invert = true; }
    else if (this.kind === "gaps") { hi = Math.max(1, (ys[Math.floor(ys.length * 0.95)] ?? 1) * 1.05); invert = true; }
    else if (ys.length) { lo = ys[0] - 0.5; hi = Math.min(ys[ys.length - 1], ys[Math.floor(ys.length / 2)] * 1.08); }
    return { series: out, lo, hi, invert };
  }

  draw() {
    const cv = this.canvas;
    if (!this.laps || !this.visible) return;
    const dpr = window.devicePixelRatio || 1;
    const { W, H, n, x0, xOf } = this._frame();
    cv.width = Math.max(1, Math.round(W * dpr));
    cv.height = Math.max(1, Math.round(H * dpr));
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = "10px system-ui, sans-serif";
    const sel = this.selected();
    this.pts = [];
    this.pick.hidden = this.kind !== "compare";
    if (this.kind === "compare") {
      this._compare(ctx, W, H, sel);
      return;
    }
    // lap grid
    ctx.fillStyle = "#8b93a7";
    ctx.strokeStyle = "#262b36";
    ctx.lineWidth = 1;
    const step = n > 40 ? 10 : n > 15 ? 5 : 1;
    for (let lap = x0; lap <= n; lap += step) {
      const x = Math.round(xOf(lap)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, PAD.t); ctx.lineTo(x, H - PAD.b); ctx.stroke();
      ctx.fillText(String(lap), x - 4, H - 6);
    }
    let drawn = 0;
    if (this.kind === "strategy") drawn = this._strategy(ctx, xOf, W, H, sel);
    else drawn = this._lines(ctx, xOf, W, H, sel);
    // the current time
    const cur = lapAt(this.laps, this.lead, this.t);
    const x = xOf(Math.max(x0, Math.min(n, cur)));
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, PAD.t); ctx.lineTo(x, H - PAD.b); ctx.stroke();
    Object.assign(this.root.dataset, { kind: this.kind, series: String(drawn), markerLap: cur.toFixed(2), highlight: sel.join(",") });
  }

  _lines(ctx, xOf, W, H, sel) {
    const { series, lo, hi, invert } = this._series();
    const yOf = (v) => {
      const f = (Math.min(hi, Math.max(lo, v)) - lo) / Math.max(1e-9, hi - lo);
      return PAD.t + (invert ? f : 1 - f) * (H - PAD.t - PAD.b);
    };
    ctx.fillStyle = "#8b93a7";
    const ticks = this.kind === "positions" ? [1, 5, 10, 15, 20].filter((p) => p <= this.laps.drivers.length) : [lo, (lo + hi) / 2, hi];
    for (const v of ticks) {
      const label = this.kind === "laptimes" ? lapTime(v) : this.kind === "gaps" ? `${Math.round(v)}s` : `P${v}`;
      ctx.fillText(label, 2, yOf(v) + 3);
    }
    const order = [...series].sort((a, b) => (sel.includes(a.code) ? 1 : 0) - (sel.includes(b.code) ? 1 : 0)); // selected on top
    for (const s of order) {
      const d = this.meta.byCode.get(s.code);
      const hl = !sel.length || sel.includes(s.code);
      ctx.strokeStyle = hl ? (d ? d.color : "#ccc") : "#4a5060";
      ctx.globalAlpha = hl ? 1 : 0.45;
      ctx.lineWidth = sel.includes(s.code) ? 2.5 : 1.2;
      ctx.beginPath();
      s.pts.forEach(([lap, v, frame], i) => {
        const x = xOf(lap), y = yOf(v);
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        this.pts.push({ x, y, code: s.code, frame });
      });
      ctx.stroke();
      if (hl && sel.length) {
        const [lap, v] = s.pts[s.pts.length - 1];
        ctx.fillStyle = d ? d.color : "#ccc";
        ctx.fillText(s.code, xOf(lap) + 3, yOf(v) + 3);
      }
    }
    ctx.globalAlpha = 1;
    return series.length;
  }

  /** The lap picker for drivers `sel` (two): options rebuilt when the drivers change, choices kept when still offered. */
  _picker(sel) {
    const key = sel.length === 2 ? sel.join(",") : "";
    this.lapSel.forEach((el) => (el.disabled = !key));
    if (!key || key === this.pickFor) return; // not two drivers: the last choices stay, greyed out
    this.pickFor = key;
    const names = this.pick.querySelectorAll("label > span");
    this.lapSel.forEach((el, k) => {
      names[k].textContent = sel[k];
      const opts = lapOptions(this.laps, sel[k], { same: k === 1 ? sel[0] : null });
      el.innerHTML = opts.map((o) => `<option value="${esc(o.value)}">${esc(o.text)}</option>`).join("");
      if (!opts.some((o) => o.value === this.lapChoice[k])) this.lapChoice[k] = "fastest";
      el.value = this.lapChoice[k];
    });
  }

  /** Two selected drivers' chosen laps (GET /api/replays/{id}/compare): speed, throttle, brake, gear, time delta. */
  _compare(ctx, W, H, sel) {
    const ds = this.root.dataset;
    const say = (text) => {
      ctx.fillStyle = "#8b93a7";
      ctx.fillText(text, PAD.l, H / 2);
      this.cmpBox = null;
      Object.assign(ds, { kind: "compare", series: "0", panels: "0", highlight: sel.join(",") });
    };
    this._picker(sel);
    if (sel.length !== 2) return say("Select two drivers (click, then shift-click) to compare their laps.");
    const want = `${sel[0]}:${this.lapChoice[0]}|${sel[1]}:${this.lapChoice[1]}`;
    if (!this.cmp || this.cmp.want !== want) {
      if (this.pending !== want) {
        this.pending = want;
        fetch(`/api/replays/${encodeURIComponent(this.replayId)}/compare?${compareQuery(sel, this.lapChoice)}`)
          .then(async (r) => {
            if (r.ok) return r.json();
            const body = await r.json().catch(() => ({}));
            throw new Error(body.detail || `HTTP ${r.status}`);
          })
          .then((data) => { this.cmp = { want, data }; })
          .catch((err) => { this.cmp = { want, error: String(err.message || err) }; })
          .finally(() => { if (this.pending === want) this.pending = null; this.draw(); });
      }
      return say("Loading the comparison…");
    }
    if (this.cmp.error) {
      say(`No comparison: ${this.cmp.error}`);
      ds.compareError = this.cmp.error;
      return;
    }
    delete ds.compareError;
    const c = this.cmp.data;
    const color = (code, other) => {
      const d = this.meta.byCode.get(code);
      return d && d.color !== other ? d.color : other === "#ffffff" ? "#ff8000" : "#ffffff";
    };
    const ca = color(c.a.driver, null), cb = color(c.b.driver, ca);
    const box = { x0: PAD.l + 14, x1: W - PAD.r, y0: PAD.t + 2, y1: H - PAD.b };
    const drawn = drawCompare(ctx, box, c, [ca, cb]);
    this.cmpBox = { x0: box.x0, x1: box.x1, end: drawn.end };
    delete ds.cursor;
    if (this.hoverX != null && this.hoverX >= box.x0 && this.hoverX <= box.x1) {
      const k = indexAt(c, ((this.hoverX - box.x0) / Math.max(1, box.x1 - box.x0)) * drawn.end);
      drawCursor(ctx, box, c, k, drawn.xOf, [ca, cb]);
      ds.cursor = String(k);
    }
    // "fastest" names the lap it turned out to be
    this.lapSel.forEach((el, k) => {
      const side = k ? c.b : c.a;
      const o = el.querySelector('option[value="fastest"]');
      if (o) o.textContent = this.lapChoice[k] === "fastest" ? `fastest (L${side.lap})` : "fastest lap";
    });
    const key = `${c.a.driver}:${c.a.lap}|${c.b.driver}:${c.b.lap}`;
    Object.assign(ds, { kind: "compare", series: String(drawn.lines), panels: String(drawn.panels), highlight: sel.join(","), compare: key, points: String(c.distance.length) });
  }

  _strategy(ctx, xOf, W, H, sel) {
    const L = this.laps;
    const rows = L.drivers;
    const rowH = (H - PAD.t - PAD.b) / Math.max(1, rows.length);
    rows.forEach((code, r) => {
      const y = PAD.t + r * rowH;
      const hl = !sel.length || sel.includes(code);
      ctx.fillStyle = hl ? "#c9cfdb" : "#5a6070";
      ctx.fillText(code, 2, y + rowH * 0.75);
      for (const st of L.stints.filter((s) => s.driver === code)) {
        ctx.globalAlpha = hl ? 1 : 0.35;
        ctx.fillStyle = compound(st.compound).color;
        const x1 = xOf(st.start_lap - 1), x2 = xOf(st.end_lap);
        ctx.fillRect(x1 + 1, y + 1, Math.max(1, x2 - x1 - 2), Math.max(1, rowH - 2));
      }
      ctx.globalAlpha = 1;
      (L.crossing_frame[code] || []).forEach((frame, k) => {
        if (frame != null) this.pts.push({ x: xOf(k + 1), y: y + rowH / 2, code, frame });
      });
    });
    return rows.length;
  }

  _click(ev) {
    if (!this.laps) return;
    const r = this.canvas.getBoundingClientRect();
    const px = ev.clientX - r.left, py = ev.clientY - r.top;
    if (this.kind === "compare") {
      // Along the first driver's lap: the frame where it was at that distance.
      const b = this.cmpBox, c = this.cmp && this.cmp.data;
      if (!b || !c) return;
      const d = (Math.min(b.x1, Math.max(b.x0, px)) - b.x0) / Math.max(1, b.x1 - b.x0) * b.end;
      const frame = frameAtDistance(c, d, this.meta.fps);
      if (frame != null) this.onSeek(frame);
      return;
    }
    let best = null, bd = 14 * 14;
    for (const p of this.pts) {
      const d = (p.x - px) ** 2 + (p.y - py) ** 2;
      if (d < bd) { bd = d; best = p; }
    }
    if (best) {
      if (!this.selected().includes(best.code) || ev.shiftKey) this.onSelect(best.code, ev.shiftKey);
      this.onSeek(best.frame);
      return;
    }
    // Elsewhere: the leader's crossing of the nearest lap (lap 0: lights out).
    const { n, x0, xOf } = this._frame();
    const lap = Math.max(x0, Math.min(n, Math.round(x0 + ((px - xOf(x0)) / Math.max(1, xOf(n) - xOf(x0))) * (n - x0))));
    if (lap === 0) return this.onSeek(this.laps.start_frame);
    let frame = null, tBest = Infinity;
    for (const code of this.laps.drivers) {
      const t = (this.laps.crossing_t[code] || [])[lap - 1];
      if (t != null && t < tBest) { tBest = t; frame = this.laps.crossing_frame[code][lap - 1]; }
    }
    if (frame != null) this.onSeek(frame);
  }
}
