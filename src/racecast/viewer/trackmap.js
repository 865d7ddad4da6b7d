// Track map on a canvas: the static track (outline, pit lane, start/finish, sectors, DRS zones) is
// drawn once per resize into an offscreen layer; each animation frame copies it and draws the cars.

const SECTOR_COLORS = ["#ff5a5f", "#ffd12e", "#b77dff"];

export class TrackMap {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.layer = document.createElement("canvas");
    this.geo = null;
    this.dpr = 1;
    this.labels = true;
    this.screen = new Map(); // code -> [px, py] of the last drawn cars (CSS pixels), for hit tests
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
  }

  setGeometry(geo) {
    this.geo = geo;
    if (geo) {
      // Cumulative distance along the centre line, scaled to the official length, for sector/DRS lookups.
      const { cx, cy } = geo;
      const cum = [0];
      for (let i = 1; i < cx.length; i++) cum.push(cum[i - 1] + Math.hypot(cx[i] - cx[i - 1], cy[i] - cy[i - 1]));
      const closing = Math.hypot(cx[0] - cx[cx.length - 1], cy[0] - cy[cy.length - 1]);
      const total = cum[cum.length - 1] + closing;
      const k = geo.length > 0 ? geo.length / total : 1;
      this.cum = cum.map((d) => d * k);
      this.lapLen = total * k;
    }
    this.resize();
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(box.width * dpr));
    const h = Math.max(1, Math.round(box.height * dpr));
    this.dpr = dpr;
    this.cssW = box.width;
    this.cssH = box.height;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.layer.width = w;
    this.layer.height = h;
    this._fit();
    this._drawStatic();
    this.dirty = true;
  }

  _fit() {
    const g = this.geo;
    if (!g) return;
    const th = (g.rotation * Math.PI) / 180;
    this.cos = Math.cos(th);
    this.sin = Math.sin(th);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    const grow = (xs, ys) => {
      for (let i = 0; i < xs.length; i++) {
        const rx = xs[i] * this.cos - ys[i] * this.sin;
        const ry = xs[i] * this.sin + ys[i] * this.cos;
        if (rx < x0) x0 = rx;
        if (rx > x1) x1 = rx;
        if (ry < y0) y0 = ry;
        if (ry > y1) y1 = ry;
      }
    };
    grow(g.cx, g.cy);
    grow(g.ox, g.oy);
    grow(g.px, g.py);
    const pad = 28, padTop = 44; // room for labels, and for the map's buttons at the top
    const w = Math.max(10, this.cssW - 2 * pad);
    const h = Math.max(10, this.cssH - pad - padTop);
    this.scale = Math.min(w / Math.max(1e-6, x1 - x0), h / Math.max(1e-6, y1 - y0));
    this.offX = pad + (w - (x1 - x0) * this.scale) / 2 - x0 * this.scale;
    this.offY = padTop + (h - (y1 - y0) * this.scale) / 2 + y1 * this.scale; // y grows up on the track, down on screen
  }

  /** Track metres -> CSS pixels. */
  project(x, y) {
    const rx = x * this.cos - y * this.sin;
    const ry = x * this.sin + y * this.cos;
    return [this.offX + rx * this.scale, this.offY - ry * this.scale];
  }

  /** Point and heading (radians, screen space) at `d` metres along the centre line. */
  _along(d) {
    const { cx, cy } = this.geo;
    const cum = this.cum;
    const n = cx.length;
    d = ((d % this.lapLen) + this.lapLen) % this.lapLen;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (cum[mid] <= d) lo = mid; else hi = mid - 1;
    }
    const j = (lo + 1) % n;
    const segEnd = j === 0 ? this.lapLen : cum[j];
    const f = segEnd > cum[lo] ? (d - cum[lo]) / (segEnd - cum[lo]) : 0;
    const x = cx[lo] + (cx[j] - cx[lo]) * f;
    const y = cy[lo] + (cy[j] - cy[lo]) * f;
    const [ax, ay] = this.project(cx[lo], cy[lo]);
    const [bx, by] = this.project(cx[j], cy[j]);
    return { p: this.project(x, y), heading: Math.atan2(by - ay, bx - ax), idx: lo, f };
  }

  _path(ctx, xs, ys, close) {
    ctx.beginPath();
    for (let i = 0; i < xs.length; i++) {
      const [px, py] = this.project(xs[i], ys[i]);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    }
    if (close) ctx.closePath();
  }

  _segment(ctx, a, b) {
    // Centre line from distance a to b (wrapping over the line).
    const { cx, cy } = this.geo;
    const n = cx.length;
    const pa = this._along(a), pb = this._along(b);
    ctx.beginPath();
    ctx.moveTo(...pa.p);
    let i = (pa.idx + 1) % n;
    let guard = 0;
    while (i !== (pb.idx + 1) % n && guard++ < n) {
      ctx.lineTo(...this.project(cx[i], cy[i]));
      i = (i + 1) % n;
    }
    ctx.lineTo(...pb.p);
  }

  _tick(ctx, d, color, len, width) {
    const { p, heading } = this._along(d);
    const nx = -Math.sin(heading), ny = Math.cos(heading);
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.moveTo(p[0] - nx * len, p[1] - ny * len);
    ctx.lineTo(p[0] + nx * len, p[1] + ny * len);
    ctx.stroke();
  }

  _drawStatic() {
    const ctx = this.layer.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.layer.width, this.layer.height);
    const g = this.geo;
    if (!g) return;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.lineJoin = ctx.lineCap = "round";
    const trackW = Math.max(9, Math.min(18, 14 * this.scale * 1.2));
    // Pit lane under the track.
    if (g.px.length > 1) {
      this._path(ctx, g.px, g.py, false);
      ctx.strokeStyle = "#3a4150";
      ctx.lineWidth = Math.max(4, trackW * 0.45);
      ctx.stroke();
      ctx.setLineDash([4, 5]);
      ctx.strokeStyle = "#8b93a7";
      ctx.lineWidth = 1.2;
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // Track band: a kerb-coloured edge and the asphalt.
    this._path(ctx, g.cx, g.cy, true);
    ctx.strokeStyle = "#596173";
    ctx.lineWidth = trackW + 3;
    ctx.stroke();
    ctx.strokeStyle = "#2b303b";
    ctx.lineWidth = trackW;
    ctx.stroke();
    // DRS zones along the centre line.
    for (const [a, b] of g.drsZones) {
      if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
      this._segment(ctx, a, b);
      ctx.strokeStyle = "rgba(46, 204, 113, 0.75)";
      ctx.lineWidth = 2.5;
      ctx.stroke();
    }
    // Sector boundaries (the start line begins sector 1).
    ctx.font = "600 10px system-ui, sans-serif";
    g.sectors.forEach((d, k) => {
      if (!Number.isFinite(d)) return;
      this._tick(ctx, d, SECTOR_COLORS[(k + 1) % 3], trackW * 0.75, 2.5);
      const { p, heading } = this._along(d);
      const nx = -Math.sin(heading), ny = Math.cos(heading);
      ctx.fillStyle = SECTOR_COLORS[(k + 1) % 3];
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(`S${k + 2}`, p[0] + nx * (trackW + 8), p[1] + ny * (trackW + 8));
    });
    // Start/finish: a chequered bar across the track.
    let sx, sy, heading;
    if (g.startFinish && (g.startFinish[0] || g.startFinish[1])) {
      [sx, sy] = this.project(g.startFinish[0], g.startFinish[1]);
      const h = g.startFinish[2] || 0;
      const [hx, hy] = this.project(g.startFinish[0] + Math.cos(h), g.startFinish[1] + Math.sin(h));
      heading = Math.atan2(hy - sy, hx - sx);
    } else {
      const a = this._along(0);
      [sx, sy] = a.p;
      heading = a.heading;
    }
    ctx.save();
    ctx.translate(sx, sy);
    ctx.rotate(heading);
    const half = trackW / 2 + 2;
    const cells = 6, cell = (2 * half) / cells;
    for (let i = 0; i < cells; i++) {
      for (let j = 0; j < 2; j++) {
        ctx.fillStyle = (i + j) % 2 ? "#111" : "#f4f4f4";
        ctx.fillRect(-cell + j * cell, -half + i * cell, cell, cell);
      }
    }
    ctx.restore();
  }

  /**
   * Draw the cars. `cars` is a list of {code, x, y, color, out, pit} in track metres,
   * `selected` a Set of codes. Returns nothing; remembers screen positions for hit tests.
   */
  draw(cars, selected) {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.layer, 0, 0);
    if (!this.geo) return;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    this.screen.clear();
    const order = cars.filter((c) => !c.out).sort((a, b) => (selected.has(a.code) - selected.has(b.code)) || b.position - a.position);
    const r = this.cssW < 500 ? 4.5 : 6;
    ctx.font = `600 ${this.cssW < 500 ? 9 : 11}px system-ui, sans-serif`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    for (const c of order) {
      const [px, py] = this.project(c.x, c.y);
      this.screen.set(c.code, [px, py]);
      const sel = selected.has(c.code);
      if (sel) {
        ctx.beginPath();
        ctx.arc(px, py, r + 6, 0, Math.PI * 2);
        ctx.fillStyle = "rgba(255,255,255,0.18)";
        ctx.fill();
      }
      ctx.beginPath();
      ctx.arc(px, py, sel ? r + 2 : r, 0, Math.PI * 2);
      ctx.fillStyle = c.color;
      ctx.globalAlpha = c.pit ? 0.6 : 1;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.lineWidth = sel ? 2.5 : 1.2;
      ctx.strokeStyle = sel ? "#ffffff" : "rgba(0,0,0,0.7)";
      ctx.stroke();
    }
    // Labels: selected cars first, then by running order; a label that would cover another is left out.
    const placed = [];
    const free = (x, y, w, h) => placed.every((b) => x + w <= b[0] || b[0] + b[2] <= x || y + h <= b[1] || b[1] + b[3] <= y);
    const byPriority = [...order].reverse().sort((a, b) => selected.has(b.code) - selected.has(a.code));
    for (const c of byPriority) {
      const sel = selected.has(c.code);
      if (!this.labels && !sel) continue;
      const [px, py] = this.screen.get(c.code);
      const w = ctx.measureText(c.code).width + 8, h = 16, gap = r + 3;
      const spots = [[px + gap, py - gap - h], [px + gap, py + gap], [px - gap - w, py - gap - h], [px - gap - w, py + gap]];
      const spot = spots.find(([x, y]) => free(x, y, w, h));
      if (!spot) continue;
      placed.push([spot[0], spot[1], w, h]);
      ctx.fillStyle = sel ? "rgba(255,255,255,0.95)" : "rgba(12,14,19,0.78)";
      roundRect(ctx, spot[0], spot[1], w, h, 4);
      ctx.fill();
      ctx.fillStyle = sel ? "#0c0e13" : "#e6e8ee";
      ctx.fillText(c.code, spot[0] + 4, spot[1] + h / 2 + 0.5);
    }
  }

  /** Code of the car drawn nearest to a CSS-pixel point, within `radius`. */
  hit(x, y, radius = 14) {
    let best = null, bestD = radius;
    for (const [code, [px, py]] of this.screen) {
      const d = Math.hypot(px - x, py - y);
      if (d <= bestD) { best = code; bestD = d; }
    }
    return best;
  }
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}
