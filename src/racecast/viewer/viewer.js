// The replay viewer: wires the connection, the commands, the player and the widgets together.
//
// Frame modes (msgpack, compact): frames arrive at up to 25 per second; the map animates at the
// display's rate by moving each car from where it is drawn now to its position in the newest
// frame over one frame period, so motion never jumps at normal speed. Seeks (or any gap in the
// frame sequence) snap instead.
//
// Chunk mode (the default where the replay has chunks): one-second chunks arrive ahead of the
// playhead and the page paces playback itself (chunkplayer.js).
//
// The parts: commands.js (commands and their acknowledgements, seek coalescing), chunkplayer.js
// (chunk mode's pacing and buffering), keys.js (keyboard shortcuts), chrome.js (header, feed,
// overlays, banners, the controls' look), and the widgets (leaderboard, map, telemetry, timeline,
// events, charts, pit prediction, results, watch together).

import { Together } from "./together.js";
import { ChartsPanel } from "./charts.js";
import { $, bindControls, Chrome } from "./chrome.js";
import { ChunkPlayer } from "./chunkplayer.js";
import { Commands } from "./commands.js";
import { chunkCompression, ReplayConnection } from "./connection.js";
import { EventsPanel } from "./events.js";
import { keyAction, nearestSpeed, SPEEDS } from "./keys.js";
import { Leaderboard } from "./leaderboard.js";
import { PitPredictPanel } from "./pitpredict.js";
import { modelFrame, normalizeMeta } from "./model.js";
import { ResultsPanel } from "./results.js";
import { History, Telemetry } from "./telemetry.js";
import { Timeline } from "./timeline.js";
import { TrackMap } from "./trackmap.js";

export { SPEEDS, SPEED_KEYS } from "./keys.js";

export class Viewer {
  constructor(replayId, params) {
    this.replayId = replayId;
    this.params = params;
    this.meta = null;
    this.cur = null; // newest frame
    this.from = null; // Map code -> {x, y}: where cars were drawn when `cur` arrived
    this.arrival = 0;
    this.period = 40;
    this.selected = new Set();
    this.grid = null;
    this.laps = []; // completed laps seen: {t, code, time}
    this.lastLapTime = new Map();
    this.fastest = null;
    this.dirty = true;
    this.prevSpeed = 1;
    this.speedChangedAt = -Infinity;
    this.resumeFrame = null;
    this.everLoaded = false;
    this.failed = false;
    this.history = new History();
    this.player = null; // chunk mode: the ChunkPlayer
    this.live = false; // the connection has loaded the replay: commands are answered
    this.cmd = new Commands((msg) => this.conn.send(msg));
    this.state = {
      replay: replayId,
      loaded: false,
      connected: false,
      playing: false,
      speed: 1,
      frame: -1,
      t: 0,
      clock: 0,
      lap: 0,
      frames_received: 0,
      reconnects: 0,
      selected: [],
      error: null,
      status: "GREEN",
      encoding: null,
      frames_shown: 0,
      bytes_received: 0,
      buffering: false,
      chunks_held: 0,
      chunks_skipped: 0,
      resyncs: 0,
      results_shown: false, // the end-of-session results panel is open
      segment: null, // qualifying: "Q2", "Q1 ended"...
    };
    this.chrome = new Chrome(this.state);
    window.racecast = { state: this.state, viewer: this };
  }

  /** Chunk mode's playhead and buffer (test hooks). */
  get ph() {
    return this.player && this.player.ph;
  }

  get buf() {
    return this.player && this.player.buf;
  }

  start() {
    document.title = `${this.replayId} · racecast`;
    $("#viewer").hidden = false;
    this.chrome.loading("Connecting…");
    this.together = new Together({
      replayId: this.replayId,
      params: this.params,
      toast: (m) => this.chrome.toast(m),
      join: () => {
        // Into the new room: reconnect; the reconnect path then seeks the room to where this page is.
        this.conn.extra = this.together.query();
        this.conn.switchEncoding(this.conn.encoding);
      },
    });
    this.state.room = this.together.state;
    const conn = (this.conn = new ReplayConnection(this.replayId, { encoding: this.params.get("encoding") || "msgpack", extra: this.together.query() }));
    conn.onOpen = () => {
      this.cmd.reset(); // a new connection: nothing is awaiting a reply on it yet
      this.live = false; // until this connection's loading_complete
      this.state.connected = true;
      this.chrome.conn(true);
      if (!this.everLoaded) this.chrome.loading("Loading replay…");
    };
    conn.onMessage = (msg) => this._message(msg);
    conn.onFrames = (frames) => {
      this.state.bytes_received = conn.bytesReceived;
      if (conn.encoding === "chunks") this._chunk(frames);
      else if (conn.encoding === "msgpack") for (const f of frames) this._frame(modelFrame(f, this.meta));
      else for (const f of frames) this._frame(f);
    };
    conn.onDown = (info) => this._down(info);
    conn.onFatal = ({ code, reason }) => {
      this.state.connected = false;
      this.chrome.conn(false);
      const why = this.loadError || reason;
      if (code === 4404) this.chrome.error("Replay not found", `There is no replay called “${this.replayId}” on this server.${why ? ` (${why})` : ""}`);
      else this.chrome.error("Cannot show this replay", why || `The server closed the connection (code ${code}).`);
    };
    conn.connect();
    requestAnimationFrame((t) => this._tick(t));
  }

  // -- server messages -----------------------------------------------------------------------------

  async _message(msg) {
    this.state.bytes_received = this.conn.bytesReceived;
    switch (msg.type) {
      case "loading_progress": {
        const p = msg.progress ?? msg.fraction ?? (msg.percent != null ? msg.percent / 100 : null);
        this.chrome.loading(msg.message || "Loading replay…", p);
        break;
      }
      case "loading_complete":
        await this._loaded(msg);
        break;
      case "loading_error":
        this.failed = true;
        this.loadError = msg.message;
        this.conn.stop({ close: false }); // the server closes; its close code tells "unknown" from "broken"
        this.chrome.error("Cannot load this replay", msg.message || "The server could not load it.");
        break;
      case "state": {
        const { kind, adopt } = this.cmd.onState(msg);
        // The server's word when it answers our latest command, or when the replay ended by itself.
        if (adopt) {
          this.state.playing = !!msg.playing;
          if (msg.speed != null) this._speedIs(Number(msg.speed));
          this._controls();
        }
        if (this.player) this.player.paceFrom(msg, kind, performance.now());
        break;
      }
      case "room":
        this.together.onMessage(msg);
        break;
      case "error":
        this.cmd.replied(); // a refused command: state unchanged
        this.chrome.toast(msg.message || "The server reported an error.");
        break;
      case "client_error":
        this.chrome.toast(msg.message || "A frame could not be decoded.");
        break;
    }
  }

  async _loaded(msg) {
    let raw = msg.metadata;
    if (!raw) {
      const r = await fetch(`/api/replays/${encodeURIComponent(this.replayId)}`);
      if (!r.ok) return this.chrome.error("Cannot load this replay", `metadata request failed (HTTP ${r.status})`);
      raw = await r.json();
    }
    if (!this.meta) {
      this.meta = normalizeMeta(raw, msg.frames);
      this._build();
    }
    const best = bestEncoding(raw);
    if (!this.everLoaded && !this.params.has("encoding") && best !== this.conn.encoding) {
      this.conn.switchEncoding(best); // the same replay in fewer bytes: worth one more handshake
      return;
    }
    this.state.encoding = this.conn.encoding;
    if (this.conn.encoding === "chunks" && !this.player) this._chunkMode(raw);
    this.live = true;
    this.state.loaded = true;
    this.state.error = null;
    this.chrome.ready();
    if (this.everLoaded) {
      // Reconnected: put the replay back where it was (or where the user asked to go), playing or not.
      // The opening frame 0 is dropped: frames wait for this seek's acknowledgement.
      const f = this.cmd.takeResume(this.resumeFrame ?? (this.cur ? this.cur.frame_index : 0));
      this.state.reconnects += 1;
      if (!this.together.inControl) return; // in a room this page does not control: follow it from where it is
      if (this.player) this.player.place(f, false, performance.now());
      this.cmd.restore(f);
      return;
    }
    this.everLoaded = true;
    // First load: the server shows frame 0 (the grid), or a room's position; then the start position the URL asks for.
    if (this.together.room) return; // a room decides where it is
    const p = this.params;
    const fps = this.meta.fps;
    let start = null;
    if (p.has("frame")) start = Number(p.get("frame"));
    else if (p.has("t")) start = Math.round(Number(p.get("t")) * fps);
    if (Number.isFinite(start) && start > 0) this.seek(start);
    const sp = Number(p.get("speed"));
    if (SPEEDS.includes(sp)) this.cmd.want.speed = sp;
    if (p.get("play") === "1") this.play();
    else if (this.cmd.want.speed !== 1) this.setSpeed(this.cmd.want.speed);
  }

  _down({ retryIn, attempt, wasOpen }) {
    this.live = false;
    this.state.connected = false;
    this.chrome.conn(false);
    if (this.failed) return;
    if (this.cur) this.resumeFrame = this.cur.frame_index;
    const now = performance.now();
    if (this.player) this.player.place(this.player.at(now), false, now); // no chunks come: stop here
    const secs = (retryIn / 1000).toFixed(retryIn < 1000 ? 2 : 0);
    if (!this.everLoaded) {
      this.chrome.loading(attempt > 2 ? `Cannot reach the server — retrying in ${secs} s (attempt ${attempt})` : "Connecting…");
      return;
    }
    this.chrome.reconnecting(attempt > 3 ? `Server unreachable — still trying (attempt ${attempt})…` : wasOpen ? "Connection lost — reconnecting…" : "Reconnecting…");
  }

  // -- frames --------------------------------------------------------------------------------------

  _frame(f) {
    if (!this.meta) return;
    if (!this.grid && f.frame_index === 0) this.grid = gridOf(f);
    // After a seek the server acknowledges first, then sends the target frame: anything before the
    // acknowledgement is from the old position.
    if (this.cmd.pending("seek")) return;
    this._ingest(f);
  }

  _chunkMode(raw) {
    const streams = (raw && raw.streams) || {};
    const s = streams[chunkCompression() === "gzip" ? "chunks.gz" : "chunks"] || streams.chunks || {};
    const per = s.frames_per_item > 1 ? s.frames_per_item : 25;
    const host = {
      state: this.state,
      pending: (action) => this.cmd.pending(action),
      live: () => this.live,
      show: (f) => this._ingest(f), // through the viewer: tests hook _ingest
      seek: (i) => this.seek(i),
      banner: (on) => this.chrome.buffering(on),
      changed: () => { this.dirty = true; },
    };
    this.player = new ChunkPlayer(host, { nFrames: this.meta.nFrames, fps: this.meta.fps, per });
    if (this.cur) this.player.ph.set(this.cur.frame_index, false, this.state.speed, performance.now());
  }

  /** One decoded chunk (its frames in order) to the player. */
  _chunk(frames) {
    if (!this.meta || !this.player || !frames.length) return;
    if (!this.grid && frames[0].frame_index === 0) this.grid = gridOf(frames[0]);
    this.player.add(frames, performance.now());
  }

  _ingest(f) {
    const now = performance.now();
    const cur = this.cur;
    const step = cur ? f.frame_index - cur.frame_index : 0;
    if (this.player) {
      // Chunk mode: the animation interpolates from the buffer; only a step back forgets laps.
      this.from = null;
      if (cur && step < 0) this._jumped(f, true);
      this._showFrame(f, now);
      return;
    }
    // Largest step playback makes (a bit over one tick at the recent speed); anything else is a seek.
    const speed = Math.max(this.state.speed, now - this.speedChangedAt < 1000 ? this.prevSpeed : 0);
    const maxStep = Math.max(3, Math.ceil(speed * 2) + 2);
    const continuous = cur && step > 0 && step <= maxStep && this.state.playing;
    if (continuous) {
      this.from = this._positionsAt(now);
      this.period = Math.min(1000, Math.max(15, ((f.t - cur.t) / Math.max(0.01, this.state.speed)) * 1000));
    } else {
      this.from = null;
      if (cur && step !== 0 && !(step > 0 && step <= maxStep)) this._jumped(f, step < 0);
    }
    this.state.frames_received += 1;
    this._showFrame(f, now);
  }

  _showFrame(f, now) {
    this.cur = f;
    this.arrival = now;
    this.dirty = true;
    this.resumeFrame = null;
    const st = this.state;
    st.frame = f.frame_index;
    st.t = f.t;
    st.clock = f.t - this.meta.t0;
    st.lap = f.lap;
    st.frames_shown += 1;
    this._laps(f);
    if (f.weather) this.weather = f.weather;
    this.history.push(f);
    if (!document.hidden) this._show(f); // a background tab catches up when it is shown again
  }

  _show(f) {
    this.chrome.header(this.meta, f, this.weather);
    this.board.update(f, this.grid, this.fastest, this.selected);
    this.telemetry.update(f);
    this.timeline.set(f.frame_index);
    this.events.update(f.frame_index);
    this.charts.update(f.t);
    this.pitPredict.update(f, this.state.status);
    this.chrome.feed(this.meta, f.t);
    this.results.update(f);
  }

  _jumped(f, backwards) {
    // A seek back: laps after the new time have not happened yet (telemetry history resets itself).
    if (backwards) {
      this.laps = this.laps.filter((l) => l.t <= f.t);
      this.lastLapTime.clear();
      this.fastest = this.laps.reduce((b, l) => (!b || l.time < b.time ? { code: l.code, time: l.time } : b), null);
    }
  }

  _laps(f) {
    for (const [code, c] of Object.entries(f.drivers)) {
      const lt = c.lap_time;
      if (lt == null || !Number.isFinite(lt) || lt <= 0) continue;
      if (this.lastLapTime.get(code) === lt) continue;
      this.lastLapTime.set(code, lt);
      if (this.laps.some((l) => l.code === code && l.time === lt)) continue;
      this.laps.push({ t: f.t, code, time: lt });
      if (!this.fastest || lt < this.fastest.time) this.fastest = { code, time: lt };
    }
  }

  _positionsAt(now) {
    const cur = this.cur;
    if (!cur) return new Map();
    if (this.player) return this.player.positions(now, cur);
    const out = new Map();
    const a = this.from ? Math.min(1, Math.max(0, (now - this.arrival) / this.period)) : 1;
    for (const [code, c] of Object.entries(cur.drivers)) {
      const p = this.from && this.from.get(code);
      out.set(code, p ? { x: p.x + (c.x - p.x) * a, y: p.y + (c.y - p.y) * a } : { x: c.x, y: c.y });
    }
    return out;
  }

  _tick(now) {
    requestAnimationFrame((t) => this._tick(t));
    if (this.player && this.meta && this.everLoaded) this.player.pace(now, this.cur, this.arrival);
    if (!this.cur || !this.map) return;
    const moving = this.player ? this.player.moving : this.from && now - this.arrival < this.period + 20;
    if (!moving && !this.dirty) return; // nothing changes on screen: draw nothing (paused costs nothing)
    this.dirty = false;
    const pos = this._positionsAt(now);
    const cars = [];
    for (const [code, c] of Object.entries(this.cur.drivers)) {
      if (c.status === "dns") continue; // did not start: listed, never drawn
      const d = this.meta.byCode.get(code);
      const p = pos.get(code);
      cars.push({ code, x: p.x, y: p.y, color: d ? d.color : "#ccc", out: c.status === "out", pit: c.status === "pit", position: c.position });
    }
    this.map.draw(cars, this.selected);
  }

  // -- building the page -----------------------------------------------------------------------------

  _build() {
    const m = this.meta;
    this.chrome.build(m);
    this.map = new TrackMap($("#track"));
    this.map.labels = this.params.get("labels") !== "0";
    $("#labels-toggle").setAttribute("aria-pressed", String(this.map.labels));
    this.map.setGeometry(m.geometry);
    if (m.geometry) this.history.lapLen = m.geometry.length || this.map.lapLen || 5000;
    this.board = new Leaderboard($("#board-rows"), $("#gap-toggle"), { onSelect: (c, add) => this.select(c, add) });
    this.board.setDrivers(m.drivers);
    this.board.timed = timedSession(m);
    this.telemetry = new Telemetry($("#telemetry"), m, this.history);
    this.timeline = new Timeline($("#scrubber"), m, { onSeek: (f) => this.seek(f), onScrub: (f) => this.seek(f) });
    this.timeline.draw();
    const selected = () => [...this.selected];
    this.events = new EventsPanel($("#events"), m, { onSeek: (f) => this.seek(f), selected });
    this.events.onLoad = (list) => this.timeline.setEvents(list);
    this.events.load(this.replayId);
    this.charts = new ChartsPanel($("#charts"), m, { onSeek: (f) => this.seek(f), onSelect: (c, add) => this.select(c, add), selected });
    this.charts.load(this.replayId);
    this.pitPredict = new PitPredictPanel($("#pit-predict"), { events: () => this.events.events, selected });
    this.results = new ResultsPanel($("#results"), $("#results-open"), m, (shown) => (this.state.results_shown = shown));
    bindControls(this);
    document.addEventListener("keydown", (ev) => this._key(ev));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.cur) { this._show(this.cur); this.dirty = true; }
    });
    this._controls();
    const sel = (this.params.get("select") || "").split(",").filter((c) => m.byCode.has(c));
    sel.forEach((c) => this.select(c, true));
    this.telemetry.setSelection([...this.selected]);
  }

  _key(ev) {
    const act = keyAction({ key: ev.key, shiftKey: ev.shiftKey, ctrlKey: ev.ctrlKey, metaKey: ev.metaKey, altKey: ev.altKey, tag: ev.target && ev.target.tagName }, this.cmd.want.speed);
    if (!act) return;
    const [name, arg, mine] = act;
    switch (name) {
      case "escape":
        if (this.chrome.helpShown) this.help(false);
        else this.clearSelection();
        return; // Escape stays the browser's too
      case "togglePlay": this.togglePlay(); break;
      case "step": this.step(arg); break;
      case "speed": this.setSpeed(arg); break;
      case "restart": this.restart(); break;
      case "help": this.help(); break;
      case "labels": this.toggleLabels(); break;
      case "charts": this.toggleCharts(); break;
      case "pitPredict": this.pitPredict.toggle(); this.pitPredict.update(this.cur, this.state.status); break;
      case "event": this.events.jump(arg, mine); break;
      case "gapMode": this.board.setMode(this.board.mode === "gap" ? "interval" : "gap"); break;
    }
    ev.preventDefault();
  }

  // -- actions -------------------------------------------------------------------------------------

  /** In a room this page does not control: say so (the room's host steers) instead of acting. */
  _watching() {
    if (this.together.inControl) return false;
    this.chrome.toast("In this room only the host controls playback; you are watching.");
    return true;
  }

  play() {
    if (this._watching()) return;
    // On the last frame the server restarts from frame 0.
    this.state.playing = true;
    this.cmd.play();
    this._controls();
  }

  pause() {
    if (this._watching()) return;
    this.state.playing = false;
    const now = performance.now();
    if (this.player) this.player.place(this.player.at(now), false, now); // stop now; the reply says where
    this.cmd.pause();
    this._controls();
  }

  togglePlay() {
    if (this.state.playing) this.pause(); else this.play();
  }

  _speedIs(s) {
    if (s === this.state.speed) return;
    this.prevSpeed = this.state.speed;
    this.speedChangedAt = performance.now();
    this.state.speed = s;
  }

  setSpeed(s) {
    if (this._watching()) return;
    this._speedIs(s);
    this.cmd.speed(s);
    this._controls();
  }

  /** Seek to `frame` (coalesced: see commands.js). */
  seek(frame) {
    if (!this.meta || this._watching()) return;
    const target = Math.max(0, Math.min(this.meta.nFrames - 1, Math.round(frame)));
    // Chunk mode: show the target at once if a held chunk has it; the reply starts the clock there.
    if (this.player) this.player.place(target, false, performance.now());
    this.cmd.seek(target);
  }

  step(seconds) {
    if (!this.cur) return;
    // Relative to the newest target: five quick presses of → go 5 s on, not 1 s five times.
    // (Chunk mode: the playhead is on a seek's target as soon as it is acknowledged.)
    const here = this.player ? Math.floor(this.player.at(performance.now())) : this.cur.frame_index;
    this.seek(this.cmd.target(here) + seconds * this.meta.fps);
  }

  restart() {
    this.seek(0);
  }

  seekLap(n) {
    const last = this.meta.maxLap || n;
    const now = performance.now();
    if (this.player) this.player.place(this.player.at(now), false, now); // the reply says which frame
    this.cmd.seekLap(Math.max(1, Math.min(last, n)));
  }

  select(code, additive) {
    if (additive) {
      if (this.selected.has(code)) this.selected.delete(code); else this.selected.add(code);
    } else if (this.selected.size === 1 && this.selected.has(code)) {
      this.selected.clear();
    } else {
      this.selected = new Set([code]);
    }
    this._selectionChanged();
  }

  clearSelection() {
    this.selected.clear();
    this._selectionChanged();
  }

  _selectionChanged() {
    this.state.selected = [...this.selected];
    if (!this.telemetry) return;
    this.telemetry.setSelection(this.state.selected);
    if (this.events.mine.checked) this.events.render();
    this.charts.draw();
    this.pitPredict.update(this.cur, this.state.status);
    if (this.cur) {
      this.board.update(this.cur, this.grid, this.fastest, this.selected);
      this.telemetry.update(this.cur);
    }
    this.dirty = true;
  }

  toggleCharts(show) {
    const c = $("#charts");
    c.hidden = show === undefined ? !c.hidden : !show;
    $("#charts-toggle").setAttribute("aria-pressed", String(!c.hidden));
    this.charts.draw();
  }

  toggleLabels() {
    this.map.labels = !this.map.labels;
    $("#labels-toggle").setAttribute("aria-pressed", String(this.map.labels));
    this.dirty = true;
  }

  help(show) {
    this.chrome.help(show);
  }

  _controls() {
    this.chrome.controls(nearestSpeed(this.cmd.want.speed));
  }
}

/** Ranked by lap times, not race progress: a qualifying (segments) or a practice / qualifying session type. */
function timedSession(m) {
  if (m.qualifying && m.qualifying.segments && m.qualifying.segments.length) return true;
  return /^(Q|FP\d)$/.test(String((m.event || {}).session_type || "")); // SQ/SS were sprints before 2024: segments decide
}

function gridOf(frame) {
  return Object.fromEntries(Object.entries(frame.drivers).map(([c, d]) => [c, d.position]));
}

/** The fewest bytes this viewer can play that the replay offers: chunks, else compact frames, else msgpack. */
function bestEncoding(raw) {
  const streams = (raw && raw.streams) || {};
  const chunks = streams[chunkCompression() === "gzip" ? "chunks.gz" : "chunks"];
  if (chunks && chunks.frames_per_item > 1) return "chunks";
  return streams.compact && streams.compact.frames_per_item === 1 ? "compact" : "msgpack";
}
