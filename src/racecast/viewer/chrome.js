// The page chrome around the replay: header (event, lap, clock, track status, weather, qualifying
// segment), the race-control feed, the play controls' look, the connection dot, the loading and
// error overlays, the banners and the toast. Only DOM writes; what to show comes from the viewer.

import { clock, esc, speed as fmtSpeed, TRACK_STATUS } from "./format.js";
import { SPEEDS } from "./keys.js";
import { messagesUntil, statusAt, weatherAt } from "./model.js";
import { segmentAt } from "./results.js";

const FEED_MAX = 40;
const TOAST_MS = 4000;
const FINISHED = { key: "FINISHED", text: "Chequered flag", color: "#f4f4f4" };

export const $ = (sel) => document.querySelector(sel);

export class Chrome {
  constructor(state) {
    this.state = state; // the viewer's state: error, loaded, status and segment are kept here
    this.feedCount = -1;
    this.toastTimer = null;
  }

  /** The event's title and the lap total, once the metadata is known. */
  build(m) {
    const ev = m.event || {};
    $("#event-title").textContent = m.title;
    $("#event-sub").textContent = [ev.year, ev.name && ev.name !== m.title ? ev.name : null, ev.session_type === "R" ? "Race" : ev.session_type]
      .filter(Boolean)
      .join(" · ");
    document.title = `${m.title} · racecast`;
    $("#lap-total").textContent = m.totalLaps || "–";
    $("#lap-input").max = m.totalLaps || 999;
    const sp = $("#speed");
    sp.innerHTML = SPEEDS.map((s) => `<option value="${s}">${fmtSpeed(s)}</option>`).join("");
  }

  /** The play button and speed select as the state says (`preset`: the speed preset shown). */
  controls(preset) {
    const st = this.state;
    const b = $("#play");
    b.dataset.playing = String(st.playing);
    b.setAttribute("aria-label", st.playing ? "Pause" : "Play");
    b.title = st.playing ? "Pause (Space)" : "Play (Space)";
    const sp = $("#speed");
    const v = String(preset);
    if (sp.value !== v) sp.value = v;
    sp.dataset.speed = st.speed;
    $("#viewer").dataset.playing = String(st.playing);
  }

  /** Lap, segment, clock, track status and weather for frame `f` (`weather`: the newest from the frames, if any). */
  header(m, f, weather) {
    const lap = Math.max(0, Math.min(f.lap, m.totalLaps || f.lap));
    const lapEl = $("#lap");
    if (lapEl.dataset.lap !== String(lap)) {
      lapEl.dataset.lap = lap;
      $("#lap-now").textContent = lap || "–";
    }
    const seg = segmentAt(m, f.t);
    const segEl = $("#segment");
    const segTxt = seg ? `${seg.name}${seg.ended ? " ended" : ""}` : "";
    if (segEl.dataset.text !== segTxt) {
      segEl.dataset.text = segTxt;
      segEl.textContent = segTxt;
      segEl.hidden = !seg;
      this.state.segment = segTxt || null;
    }
    const c = $("#clock");
    c.dataset.frame = f.frame_index;
    c.dataset.t = f.t.toFixed(2);
    const txt = clock(f.t - m.t0);
    if (c.textContent !== txt) c.textContent = txt;
    const leader = Object.values(f.drivers).find((d) => d.position === 1);
    const s = leader && leader.status === "finished" ? FINISHED : TRACK_STATUS[statusAt(m, f.t)];
    const ts = $("#track-status");
    if (ts.dataset.status !== s.key) {
      ts.dataset.status = s.key;
      ts.textContent = s.text;
      ts.style.setProperty("--status", s.color);
      this.state.status = s.key;
    }
    const w = weather || weatherAt(m, f.t);
    const wtxt = w ? weatherText(w) : "";
    const we = $("#weather");
    if (we.dataset.text !== wtxt) {
      we.dataset.text = wtxt;
      we.innerHTML = wtxt;
    }
  }

  /** The race-control messages up to race time `t`, newest first. */
  feed(m, t) {
    const n = messagesUntil(m, t);
    if (n === this.feedCount) return;
    this.feedCount = n;
    const ms = m.messages.slice(Math.max(0, n - FEED_MAX), n).reverse();
    const el = $("#feed");
    el.dataset.count = n;
    el.innerHTML = ms.length
      ? ms
          .map(
            (x) => `<li data-cat="${esc(x.category)}"><time>${clock(x.t - m.t0)}</time>` +
              `${x.lap ? `<span class="lap">L${esc(x.lap)}</span>` : ""}<span class="msg">${esc(x.message)}</span></li>`,
          )
          .join("")
      : '<li class="none">No messages yet.</li>';
  }

  conn(ok) {
    const c = $("#conn");
    c.dataset.connected = String(ok);
    c.title = ok ? "Connected" : "Disconnected";
  }

  loading(text, progress) {
    if (this.state.error) return;
    $("#loading").hidden = false;
    $("#loading-text").textContent = text;
    const p = $("#loading-progress");
    if (progress != null && Number.isFinite(progress)) {
      p.hidden = false;
      p.value = Math.max(0, Math.min(1, progress));
    }
  }

  /** Loaded: the overlays and the reconnect banner go. */
  ready() {
    $("#loading").hidden = true;
    $("#reconnect").hidden = true;
  }

  error(title, text) {
    this.state.error = title;
    this.state.loaded = false;
    $("#loading").hidden = true;
    $("#reconnect").hidden = true;
    $("#error").hidden = false;
    $("#viewer").classList.add("failed");
    $("#error-title").textContent = title;
    $("#error-text").textContent = text;
  }

  /** The connection is down: say so (`text`), over the picture kept. */
  reconnecting(text) {
    const b = $("#reconnect");
    b.hidden = false;
    b.textContent = text;
  }

  /** The "Buffering…" banner (never over the reconnect one). */
  buffering(on) {
    const b = $("#buffering");
    if (on) {
      if (b.hidden && $("#reconnect").hidden) b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  toast(text) {
    const t = $("#toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (t.hidden = true), TOAST_MS);
  }

  help(show) {
    const h = $("#help");
    h.hidden = show === undefined ? !h.hidden : !show;
  }

  get helpShown() {
    return !$("#help").hidden;
  }
}

/**
 * Wire the page's buttons, speed select, lap form and track clicks to the viewer's actions
 * (`v`: play/pause, step, restart, setSpeed, seekLap, select, help, toggleLabels, toggleCharts, map).
 */
export function bindControls(v) {
  const click = (id, fn) => $(id).addEventListener("click", (ev) => {
    fn();
    if (ev.detail > 0) ev.currentTarget.blur(); // mouse clicks leave Space to the play toggle
  });
  click("#play", () => v.togglePlay());
  click("#restart", () => v.restart());
  click("#back10", () => v.step(-10));
  click("#back1", () => v.step(-1));
  click("#fwd1", () => v.step(1));
  click("#fwd10", () => v.step(10));
  click("#help-btn", () => v.help());
  click("#labels-toggle", () => v.toggleLabels());
  click("#charts-toggle", () => v.toggleCharts());
  $("#help-close").addEventListener("click", () => v.help(false));
  $("#help").addEventListener("click", (ev) => { if (ev.target.id === "help") v.help(false); });
  const sp = $("#speed");
  sp.addEventListener("change", () => { v.setSpeed(Number(sp.value)); sp.blur(); });
  $("#lap-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = parseInt($("#lap-input").value, 10);
    if (Number.isFinite(n)) v.seekLap(n);
    $("#lap-input").blur();
  });
  $("#track").addEventListener("click", (ev) => {
    const r = ev.currentTarget.getBoundingClientRect();
    const code = v.map.hit(ev.clientX - r.left, ev.clientY - r.top);
    if (code) v.select(code, ev.shiftKey || ev.metaKey || ev.ctrlKey);
  });
}

function weatherText(w) {
  const parts = [];
  if (w.air_temp != null) parts.push(`<span title="Air temperature">Air <b>${Math.round(w.air_temp)}°</b></span>`);
  if (w.track_temp != null) parts.push(`<span title="Track temperature">Track <b>${Math.round(w.track_temp)}°</b></span>`);
  if (w.wind_speed != null) parts.push(`<span title="Wind">Wind <b>${Number(w.wind_speed).toFixed(1)}</b> m/s</span>`);
  if (w.rainfall) parts.push('<span class="rain" title="Rain">Rain</span>');
  else if (w.humidity != null) parts.push(`<span title="Humidity">Hum <b>${Math.round(w.humidity)}%</b></span>`);
  return parts.join("");
}
