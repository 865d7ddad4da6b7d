// Telemetry for the selected drivers: live numbers plus a rolling chart of the last laps,
// drawn from the frames the viewer has received (history is per driver, by distance).

import { esc, lapTime } from "./format.js";

const LAPS_KEPT = 2;
const DRS_TEXT = { 0: "DRS off", 1: "DRS eligible", 2: "DRS open" };

/** Per-driver samples {d, speed, throttle, brake, gear} over the last LAPS_KEPT laps. */
export class History {
  constructor() {
    this.lapLen = 5000;
    this.byCode = new Map();
  }

  clear() {
    this.byCode.clear();
  }

  push(frame) {
    for (const [code, c] of Object.entries(frame.drivers)) {
      let h = this.byCode.get(code);
      if (!h) this.byCode.set(code, (h = { s: [], start: 0 }));
      const last = h.s[h.s.length - 1];
      if (last && (c.dist < last.d - 1 || c.dist > last.d + this.lapLen / 4)) {
        h.s.length = 0; // a seek (backwards, or further on than any playback speed steps): a new history
        h.start = 0;
      } else if (last && c.dist <= last.d) {
        continue; // standing still: nothing new to plot
      }
      h.s.push({ d: c.dist, speed: c.speed, throttle: c.throttle, brake: c.brake, gear: c.gear });
      const keep = c.dist - LAPS_KEPT * this.lapLen;
      while (h.start < h.s.length && h.s[h.start].d < keep) h.start++;
      if (h.start > 4096) { h.s.splice(0, h.start); h.start = 0; }
    }
  }

  /** The kept samples of `code` as {s, start}: s[start..] are the last laps, oldest first. */
  samples(code) {
    return this.byCode.get(code) || { s: [], start: 0 };
  }
}

export class Telemetry {
  constructor(root, meta, history) {
    this.root = root;
    this.meta = meta;
    this.history = history;
    this.cards = root.querySelector("#telemetry-cards");
    this.hint = root.querySelector("#telemetry-hint");
    this.chart = root.querySelector("#telemetry-chart");
    this.codes = [];
    new ResizeObserver(() => { this.chartDirty = true; }).observe(this.chart);
  }

  setSelection(codes) {
    this.codes = codes.slice(0, 4);
    this.root.dataset.drivers = this.codes.join(",");
    this.root.classList.toggle("empty", this.codes.length === 0);
    this.hint.hidden = this.codes.length > 0;
    this.chart.hidden = this.codes.length === 0;
    this.cards.innerHTML = this.codes
      .map((code) => {
        const d = this.meta.byCode.get(code) || { name: code, team: "", color: "#888" };
        return `<div class="card" data-code="${esc(code)}" style="--team:${esc(d.color)}">
          <div class="who"><b>${esc(code)}</b><span class="name">${esc(d.name)}</span><span class="p" data-field="position"></span></div>
          <div class="nums"><span class="speed"><b data-field="speed">–</b> km/h</span>
            <span class="gear">gear <b data-field="gear">–</b></span><span class="drs" data-field="drs">DRS</span></div>
          <div class="bars"><label>Throttle<span class="bar thr"><i data-field="throttle"></i></span></label>
            <label>Brake<span class="bar brk"><i data-field="brake"></i></span></label></div>
          <div class="laps">Last lap <b data-field="lap_time">–</b><span data-field="sectors"></span></div>
        </div>`;
      })
      .join("");
    this.chartDirty = true;
  }

  /** Refresh numbers from `frame` (called per received frame) and, ten times a second, the chart. */
  update(frame) {
    if (!this.codes.length || !frame) return;
    for (const card of this.cards.children) {
      const c = frame.drivers[card.dataset.code];
      if (!c) continue;
      const f = (name) => card.querySelector(`[data-field="${name}"]`);
      f("speed").textContent = Math.round(c.speed);
      f("speed").parentElement.dataset.speed = Math.round(c.speed);
      f("gear").textContent = c.gear === 0 ? "N" : c.gear;
      f("position").textContent = c.status === "out" ? "OUT" : c.status === "dns" ? "DNS" : `P${c.position}`;
      const drs = f("drs");
      drs.textContent = DRS_TEXT[c.drs] ?? "DRS";
      drs.dataset.drs = c.drs;
      f("throttle").style.width = `${Math.max(0, Math.min(100, c.throttle))}%`;
      f("brake").style.width = `${Math.max(0, Math.min(100, c.brake))}%`;
      const lt = lapTime(c.lap_time);
      if (f("lap_time").textContent !== lt) {
        f("lap_time").textContent = lt;
        const sec = [c.sector1, c.sector2, c.sector3].map((v) => (v == null ? "–" : v.toFixed(3)));
        const known = c.sector1 != null || c.sector2 != null || c.sector3 != null;
        f("sectors").textContent = known ? `S1 ${sec[0]} · S2 ${sec[1]} · S3 ${sec[2]}` : "";
      }
    }
    const now = performance.now();
    if (this.chartDirty || now - (this.chartAt || 0) >= 100) {
      this.chartAt = now;
      this.chartDirty = false;
      this.drawChart();
    }
  }

  drawChart() {
    const cv = this.chart;
    if (!this.codes.length || cv.hidden) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(cv.clientWidth * dpr)), h = Math.max(1, Math.round(cv.clientHeight * dpr));
    if (cv.width !== w || cv.height !== h) { cv.width = w; cv.height = h; }
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = cv.clientWidth, H = cv.clientHeight;
    ctx.clearRect(0, 0, W, H);
    const lapLen = this.history.lapLen;
    const span = LAPS_KEPT * lapLen;
    const single = this.codes.length === 1;
    const padL = 30, padR = 6, padT = 8;
    const bandH = single ? 22 : 0; // throttle / brake strip under the speed chart
    const plotH = H - padT - 16 - bandH;
    const vmax = 360;
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = "#8b93a7";
    ctx.strokeStyle = "#262b36";
    ctx.lineWidth = 1;
    for (const v of [100, 200, 300]) {
      const y = padT + plotH * (1 - v / vmax);
      ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(W - padR, y); ctx.stroke();
      ctx.fillText(String(v), 4, y + 3);
    }
    ctx.fillText(`last ${LAPS_KEPT} laps · speed km/h`, padL, H - 3);
    const xOf = (back) => padL + (W - padL - padR) * (1 - back / span);
    const used = new Set();
    for (const code of this.codes) {
      const { s, start } = this.history.samples(code);
      if (s.length - start < 2) continue;
      const now = s[s.length - 1].d;
      if (single) {
        // Lap boundaries of this driver.
        ctx.strokeStyle = "#3a4150";
        ctx.setLineDash([3, 4]);
        for (let k = Math.floor(now / lapLen); k * lapLen > now - span; k--) {
          const x = xOf(now - k * lapLen);
          ctx.beginPath(); ctx.moveTo(x, padT); ctx.lineTo(x, padT + plotH + bandH); ctx.stroke();
        }
        ctx.setLineDash([]);
        const y0 = padT + plotH + 4;
        let lastX = -1;
        for (let i = start; i < s.length; i++) {
          const s1 = s[i];
          const x = xOf(now - s1.d);
          if (x - lastX < 1) continue; // one sample per pixel is all the strip can show
          lastX = x;
          if (s1.brake > 5) { ctx.fillStyle = "rgba(255,70,70,0.85)"; ctx.fillRect(x, y0 + 9, 1.5, 8); }
          ctx.fillStyle = `rgba(46,204,113,${0.15 + 0.85 * (s1.throttle / 100)})`;
          ctx.fillRect(x, y0, 1.5, 7);
        }
      }
      const d = this.meta.byCode.get(code);
      const color = d ? d.color : "#fff";
      ctx.strokeStyle = color;
      ctx.setLineDash(used.has(color) ? [5, 3] : []); // team mates share a colour: the second is dashed
      used.add(color);
      ctx.lineWidth = 1.6;
      // One pixel column at a time: its lowest and highest speed (braking dips stay visible).
      const yOf = (v) => padT + plotH * (1 - Math.min(vmax, v) / vmax);
      ctx.beginPath();
      let col = Math.floor(xOf(now - s[start].d)), lo = Infinity, hi = -Infinity, first = true;
      const flush = () => {
        if (lo > hi) return;
        if (first) { ctx.moveTo(col, yOf(hi)); first = false; } else ctx.lineTo(col, yOf(hi));
        if (lo !== hi) ctx.lineTo(col, yOf(lo));
      };
      for (let i = start; i < s.length; i++) {
        const x = Math.floor(xOf(now - s[i].d));
        if (x !== col) { flush(); col = x; lo = Infinity; hi = -Infinity; }
        if (s[i].speed < lo) lo = s[i].speed;
        if (s[i].speed > hi) hi = s[i].speed;
      }
      flush();
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
}
