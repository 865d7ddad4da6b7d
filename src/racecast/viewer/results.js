// End-of-session results and the qualifying segment in the header.
//
// The replay keeps showing what happened on track (the order at the line). After the flag, or
// once the last qualifying segment is over, this panel shows the session's result as the
// metadata gives it (`results`, see docs/protocol.md): the official classification with a note
// for each difference (disqualified, time penalty), or the order at the line marked unofficial
// when the source had no classification. Closing it keeps it closed until the replay goes back
// before the flag.

import { esc } from "./format.js";

/** The qualifying segment at session time `t`: {name, ended} or null (no segments). */
export function segmentAt(meta, t) {
  const segs = (meta.qualifying && meta.qualifying.segments) || [];
  if (!segs.length) return null;
  let cur = null;
  for (const s of segs) {
    if (t >= s.start) cur = s;
  }
  if (!cur) return { name: segs[0].name, ended: false };
  const last = cur === segs[segs.length - 1];
  return { name: cur.name, ended: !last && t >= cur.end };
}

function gapText(r) {
  const q = r.segment_times && Object.entries(r.segment_times);
  if (q && q.length) {
    const [name, s] = q[q.length - 1]; // qualifying: the time in the last segment reached
    return `${fmtRaceTime(s)} <span class="muted">${esc(name)}</span>`;
  }
  if (r.time != null) return fmtRaceTime(r.time);
  if (r.gap != null) return `+${r.gap.toFixed(3)}`;
  return esc(r.status || "");
}

function fmtRaceTime(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = (s % 60).toFixed(3).padStart(6, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

export class ResultsPanel {
  constructor(root, openButton, meta, onChange = () => {}) {
    this.onChange = onChange; // called with whether the panel is shown, whenever that is decided
    this.root = root;
    this.openButton = openButton;
    this.meta = meta;
    this.doc = meta.results || null;
    this.closed = false; // the user closed it since the flag
    this.available = false;
    this.quali = !!(meta.qualifying && meta.qualifying.segments && meta.qualifying.segments.length);
    if (!this.doc) return;
    this._render();
    root.querySelector(".close").addEventListener("click", () => this.close());
    openButton.addEventListener("click", (ev) => {
      this.closed = false;
      this._apply();
      if (ev.detail > 0) openButton.blur();
    });
  }

  /** Is the session over at frame `f` (leader past the flag / last segment over / last frame)? */
  over(f) {
    if (f.frame_index >= this.meta.nFrames - 1) return true;
    if (this.quali) {
      const segs = this.meta.qualifying.segments;
      return f.t >= segs[segs.length - 1].end;
    }
    return Object.values(f.drivers).some((c) => c.position === 1 && c.status === "finished");
  }

  update(f) {
    if (!this.doc) return;
    const avail = this.over(f);
    if (!avail) this.closed = false; // back before the flag: it opens again at the flag
    this.available = avail;
    this._apply();
  }

  close() {
    this.closed = true;
    this._apply();
  }

  _apply() {
    const show = this.available && !this.closed;
    if (this.root.hidden === show) this.root.hidden = !show;
    this.openButton.hidden = !(this.available && this.closed);
    this.root.dataset.shown = String(show);
    this.onChange(show);
  }

  _render() {
    const d = this.doc;
    const official = !!d.official;
    const head = official ? "Official classification" : "Unofficial result";
    const sub = official ? (this.quali ? "" : "The replay shows the order at the line; differences below.") : (d.note || "Order at the line (unofficial).");
    const rows = (d.rows || [])
      .map((r) => {
        const dq = /^disqualified/.test(r.note || "");
        const pos = dq ? "DSQ" : r.position != null ? (r.classified && !/^\d+$/.test(r.classified) ? esc(r.classified) : r.position) : "–";
        const drv = this.meta.byCode.get(r.code);
        return (
          `<tr data-code="${esc(r.code)}" data-position="${r.position ?? ""}" data-line="${r.line_position ?? ""}"${dq ? ' class="dsq"' : ""}>` +
          `<td class="pos">${pos}</td>` +
          `<td class="code"><i style="background:${drv ? drv.color : "#888"}"></i>${esc(r.code)}</td>` +
          `<td class="time">${gapText(r)}</td>` +
          `<td class="line">${official && r.line_position != null ? `P${r.line_position}` : ""}</td>` +
          `<td class="note">${esc(r.note || "")}</td></tr>`
        );
      })
      .join("");
    const notes = (d.notes || []).map((n) => `<li>${esc(n)}</li>`).join("");
    this.root.dataset.official = String(official);
    this.root.innerHTML =
      `<header><h2>${head}</h2><button class="close" type="button" title="Back to the track" aria-label="Close results">×</button></header>` +
      (sub ? `<p class="sub muted">${esc(sub)}</p>` : "") +
      `<table><thead><tr><th>P</th><th>Driver</th><th>Time</th><th>${official ? "At line" : ""}</th><th></th></tr></thead>` +
      `<tbody>${rows}</tbody></table>` +
      (notes ? `<ul class="notes">${notes}</ul>` : "");
  }
}
