// Timeline scrubber: the whole replay as a bar coloured by track status, with pit stops (below)
// and race-control messages (above) marked; drag or click to seek (dragging seeks live).

import { KIND_COLORS, describe } from "./events.js";
import { TRACK_STATUS, clock, esc } from "./format.js";

export class Timeline {
  constructor(root, meta, { onSeek, onScrub = () => {} }) {
    this.root = root;
    this.meta = meta;
    this.onSeek = onSeek;
    this.onScrub = onScrub;
    this.canvas = root.querySelector("canvas");
    this.head = root.querySelector(".playhead");
    this.played = root.querySelector(".played");
    this.tip = root.querySelector(".scrub-tip");
    this.frame = 0;
    this.dragging = false;
    this.events = []; // race events (events.js), marked along the top edge
    root.setAttribute("aria-valuemin", "0");
    root.setAttribute("aria-valuemax", String(meta.nFrames - 1));
    new ResizeObserver(() => this.draw()).observe(root);
    root.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      root.setPointerCapture(ev.pointerId);
      this.dragging = true;
      this.scrubbed = null;
      this._preview(ev);
    });
    root.addEventListener("pointermove", (ev) => {
      if (this.dragging) this._preview(ev);
      else this._hover(ev);
    });
    root.addEventListener("pointerleave", () => { if (!this.dragging) this.tip.hidden = true; });
    const finish = (ev, commit) => {
      if (!this.dragging) return;
      this.dragging = false;
      this.tip.hidden = true;
      if (commit && this._frameAt(ev) !== this.scrubbed) this.onSeek(this._frameAt(ev));
      else this._place(this.frame);
    };
    root.addEventListener("pointerup", (ev) => finish(ev, true));
    root.addEventListener("pointercancel", (ev) => finish(ev, false));
  }

  _frameAt(ev) {
    const r = this.root.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (ev.clientX - r.left) / Math.max(1, r.width)));
    return Math.round(f * (this.meta.nFrames - 1));
  }

  _tAt(frame) {
    return frame / this.meta.fps; // race clock: seconds since the replay's first frame
  }

  _hover(ev) {
    const frame = this._frameAt(ev);
    this._tipAt(frame);
  }

  _preview(ev) {
    const frame = this._frameAt(ev);
    this._place(frame);
    this._tipAt(frame);
    if (frame !== this.scrubbed) this.onScrub((this.scrubbed = frame));
  }

  _tipAt(frame) {
    const m = this.meta;
    const t = m.t0 + this._tAt(frame);
    const near = m.messages.filter((x) => Math.abs(x.t - t) < m.duration / 200).slice(0, 2).map((x) => x.message);
    const evs = this.events.filter((e) => e.kind !== "overtake" && Math.abs(e.t - t) < m.duration / 200).slice(0, 2).map(describe);
    this.tip.innerHTML = `<b>${clock(this._tAt(frame))}</b>${[...evs, ...near].map((x) => `<span>${esc(x)}</span>`).join("")}`;
    this.tip.style.left = `${(100 * frame) / Math.max(1, m.nFrames - 1)}%`;
    this.tip.hidden = false;
  }

  _place(frame) {
    const pct = (100 * frame) / Math.max(1, this.meta.nFrames - 1);
    this.head.style.left = `${pct}%`;
    this.played.style.width = `${pct}%`;
  }

  /** Mark the race's events (overtakes, pit stops, ...) on the bar. */
  setEvents(events) {
    this.events = events;
    this.root.dataset.events = String(events.length);
    this.draw();
  }

  /** Move the playhead to `frame` (ignored while the user drags). */
  set(frame) {
    this.frame = frame;
    this.root.dataset.frame = frame;
    this.root.setAttribute("aria-valuenow", String(frame));
    this.root.setAttribute("aria-valuetext", clock(this._tAt(frame)));
    if (!this.dragging) this._place(frame);
  }

  draw() {
    const cv = this.canvas, m = this.meta;
    const dpr = window.devicePixelRatio || 1;
    const W = cv.clientWidth, H = cv.clientHeight;
    cv.width = Math.max(1, Math.round(W * dpr));
    cv.height = Math.max(1, Math.round(H * dpr));
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const t0 = m.t0, span = Math.max(1e-6, m.duration);
    const xOf = (t) => ((t - t0) / span) * W;
    const barY = 7, barH = H - 14;
    ctx.fillStyle = "#2a3a2f";
    ctx.fillRect(0, barY, W, barH);
    ctx.fillStyle = TRACK_STATUS[1].color;
    ctx.globalAlpha = 0.55;
    ctx.fillRect(0, barY, W, barH);
    ctx.globalAlpha = 1;
    for (const p of m.trackStatus) {
      if (p.code === 1) continue;
      const x0 = xOf(p.start), x1 = xOf(Math.min(p.end, t0 + span));
      ctx.fillStyle = TRACK_STATUS[p.code].color;
      ctx.fillRect(x0, barY, Math.max(2, x1 - x0), barH);
    }
    if (Array.isArray(m.lapStarts)) {
      ctx.fillStyle = "rgba(0,0,0,0.35)";
      for (const t of m.lapStarts) ctx.fillRect(xOf(t), barY, 1, barH);
    }
    for (const msg of m.messages) {
      ctx.fillStyle = msg.category === "Flag" || msg.category === "SafetyCar" ? "#ffd12e" : "#c9cfdb";
      ctx.fillRect(xOf(msg.t) - 1, 0, 2, barY - 1);
    }
    const xF = (f) => (f / Math.max(1, m.nFrames - 1)) * W;
    for (const e of this.events) {
      if (e.kind === "pit_stop" || e.kind === "safety_car" || e.kind === "vsc" || e.kind === "red_flag") continue; // drawn already
      ctx.fillStyle = KIND_COLORS[e.kind] || "#ccc";
      const big = e.kind === "leader" || e.kind === "retirement" || e.kind === "chequered_flag" || e.kind === "start";
      ctx.fillRect(xF(e.frame) - (big ? 1 : 0.5), big ? barY : barY + barH / 2, big ? 2 : 1, big ? barH : barH / 2);
    }
    for (const p of m.pitStops) {
      const d = m.byCode.get(p.driver);
      ctx.fillStyle = d ? d.color : "#fff";
      ctx.fillRect(xOf(p.t_in) - 1, barY + barH + 1, 2, H - barY - barH - 1);
    }
  }
}
