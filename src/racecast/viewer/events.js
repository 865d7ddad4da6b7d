// The race's events (GET /api/replays/{id}/events): a filterable list that seeks on click, the
// next/previous event of a kind or of the selected drivers (keys [ ] and , .), and the marks the
// timeline draws. The events were computed once at ingest; this module only reads them.

import { clock, esc, lapTime } from "./format.js";

export const KIND_LABELS = {
  start: "Start",
  overtake: "Overtake",
  leader: "New leader",
  pit_stop: "Pit stop",
  safety_car: "Safety car",
  vsc: "Virtual safety car",
  red_flag: "Red flag",
  retirement: "Retirement",
  fastest_lap: "Fastest lap",
  chequered_flag: "Chequered flag",
};

export const KIND_COLORS = {
  start: "#ffffff",
  overtake: "#7fd1ff",
  leader: "#ffd12e",
  pit_stop: "#c9cfdb",
  safety_car: "#ffb000",
  vsc: "#ffb000",
  red_flag: "#ff3b3b",
  retirement: "#ff6b6b",
  fastest_lap: "#b86bff",
  chequered_flag: "#ffffff",
};

/** Does event `e` pass the filter (`kind`: "" = any; `drivers`: empty = any)? */
export function matches(e, { kind = "", drivers = [] } = {}) {
  if (kind && e.kind !== kind) return false;
  if (drivers.length && !e.drivers.some((d) => drivers.includes(d))) return false;
  return true;
}

/**
 * The event to jump to from `frame`: the first one after it (`dir` = 1) or the last one before it
 * (`dir` = -1; while playing just past an event, that event: "replay what just happened").
 * Events are in frame order. null when none.
 */
export function neighbour(events, frame, dir, filter = {}) {
  if (dir > 0) return events.find((e) => e.frame > frame && matches(e, filter)) || null;
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.frame < frame && matches(e, filter)) return e;
  }
  return null;
}

/** One line of text for an event. */
export function describe(e) {
  const [a, b] = e.drivers;
  switch (e.kind) {
    case "overtake": return `${a} passes ${b} for P${e.position}`;
    case "leader": return `${a} takes the lead from ${b}${e.reason === "pit" ? " (pit stops)" : ""}`;
    case "pit_stop": {
      const st = e.stationary_s != null ? `${e.stationary_s.toFixed(1)} s stop` : "no stop";
      const tyres = e.tyre_change ? `, ${e.tyre_in.toLowerCase()} → ${e.tyre_out.toLowerCase()}` : "";
      return `${a} pits: ${st}${tyres}`;
    }
    case "retirement": return e.dns ? `${a} does not start` : `${a} retires${e.in_pit ? " in the pit lane" : ""}`;
    case "fastest_lap": return `${a} fastest lap ${lapTime(e.lap_time)}`;
    case "chequered_flag": return `Chequered flag: ${a} wins`;
    case "safety_car": case "vsc": case "red_flag": return `${KIND_LABELS[e.kind]} (${Math.round(e.duration_s)} s)`;
    case "start": return "Lights out";
    default: return KIND_LABELS[e.kind] || e.kind;
  }
}

export class EventsPanel {
  /**
   * root: the panel (holds select.kind, input.mine, ol.list); meta: normalized metadata;
   * onSeek(frame); selected(): the viewer's selected driver codes.
   */
  constructor(root, meta, { onSeek, selected }) {
    this.root = root;
    this.meta = meta;
    this.onSeek = onSeek;
    this.selected = selected;
    this.events = [];
    this.frame = 0;
    this.list = root.querySelector("ol");
    this.kindSel = root.querySelector("select");
    this.mine = root.querySelector("input[type=checkbox]");
    this.kindSel.innerHTML = `<option value="">All events</option>` +
      Object.entries(KIND_LABELS).map(([k, v]) => `<option value="${k}">${esc(v)}</option>`).join("");
    this.kindSel.addEventListener("change", () => { this.render(); this.kindSel.blur(); });
    this.mine.addEventListener("change", () => { this.render(); this.mine.blur(); });
    this.list.addEventListener("click", (ev) => {
      const li = ev.target.closest("li[data-frame]");
      if (li) this.onSeek(Number(li.dataset.frame));
    });
    this.onLoad = () => {};
  }

  async load(replayId) {
    try {
      const r = await fetch(`/api/replays/${encodeURIComponent(replayId)}/events`);
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      this.events = (await r.json()).events;
      this.root.dataset.count = String(this.events.length);
    } catch (err) {
      this.events = [];
      this.root.dataset.count = "0";
      this.list.innerHTML = `<li class="none">Events unavailable (${esc(String(err.message || err))}).</li>`;
      return;
    }
    this.render();
    this.onLoad(this.events);
  }

  /** The list's filter: its kind, and the selected drivers when "selected only" is ticked. */
  filter() {
    return { kind: this.kindSel.value, drivers: this.mine.checked ? this.selected() : [] };
  }

  render() {
    const f = this.filter();
    const shown = this.events.filter((e) => matches(e, f));
    this.root.dataset.shown = String(shown.length);
    if (!shown.length) {
      this.list.innerHTML = `<li class="none">${this.events.length ? "No events match." : "No events."}</li>`;
      return;
    }
    const t0 = this.meta.t0;
    this.follow = true; // re-rendered: scroll to the current time on the next update
    this.list.innerHTML = shown.map((e) => {
      const color = KIND_COLORS[e.kind] || "#ccc";
      return `<li data-frame="${e.frame}" data-kind="${e.kind}" class="${e.frame <= this.frame ? "past" : ""}" title="Go to ${clock(e.t - t0)}">` +
        `<span class="t">${clock(e.t - t0)}</span><span class="k" style="background:${color}"></span>` +
        `<span class="x">L${e.lap} · ${esc(describe(e))}</span></li>`;
    }).join("");
  }

  /** The replay moved: mark events up to `frame` as past (cheap: only when crossing one). */
  update(frame) {
    const before = this.frame;
    this.frame = frame;
    const lo = Math.min(before, frame), hi = Math.max(before, frame);
    if (this.events.some((e) => e.frame > lo && e.frame <= hi) || this.follow) {
      this.follow = false;
      let last = null;
      for (const li of this.list.querySelectorAll("li[data-frame]")) {
        const past = Number(li.dataset.frame) <= frame;
        li.classList.toggle("past", past);
        if (past) last = li;
      }
      // keep the newest past event in view (not while the pointer is over the list: it may be reading)
      if (last && !this.list.matches(":hover")) this.list.scrollTop = Math.max(0, last.offsetTop - this.list.offsetTop - this.list.clientHeight / 2);
    }
  }

  /** Jump to the next (dir 1) / previous (dir -1) event of the list's kind, or of the selected drivers. */
  jump(dir, byDriver) {
    const sel = this.selected();
    const filter = byDriver ? { kind: this.kindSel.value, drivers: sel } : this.filter();
    if (byDriver && !sel.length) return null;
    const e = neighbour(this.events, this.frame, dir, filter);
    if (e) this.onSeek(e.frame);
    return e;
  }
}
