// The replay viewer: wires the connection, the playback state and the widgets together.
//
// Frame modes (msgpack, compact): frames arrive at up to 25 per second; the map animates at the
// display's rate by moving each car from where it is drawn now to its position in the newest
// frame over one frame period, so motion never jumps at normal speed. Seeks (or any gap in the
// frame sequence) snap instead.
//
// Chunk mode (the default where the replay has chunks): one-second chunks arrive ahead of the
// playhead; the viewer paces playback itself (playhead.js): each animation frame it shows the
// frame at the local playhead and draws cars interpolated between it and the next frame. A
// playhead that reaches a chunk not yet received holds the last frame ("buffering") and waits.

import { Together } from "./together.js";
import { chunkCompression, ReplayConnection } from "./connection.js";
import { clock, esc, speed as fmtSpeed, TRACK_STATUS } from "./format.js";
import { ChartsPanel } from "./charts.js";
import { EventsPanel } from "./events.js";
import { Leaderboard } from "./leaderboard.js";
import { PitPredictPanel } from "./pitpredict.js";
import { messagesUntil, modelFrame, normalizeMeta, statusAt, weatherAt } from "./model.js";
import { ChunkBuffer, Playhead } from "./playhead.js";
import { ResultsPanel, segmentAt } from "./results.js";
import { History, Telemetry } from "./telemetry.js";
import { Timeline } from "./timeline.js";
import { TrackMap } from "./trackmap.js";

export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64];
export const SPEED_KEYS = { 1: 1, 2: 4, 3: 16, 4: 64 };
const FEED_MAX = 40;
const CHUNKS_AHEAD = 10; // chunk mode: chunks kept beyond the playhead's (the server pushes at most 8 ahead)
const BUFFERING_SHOWN_MS = 300; // a stall shorter than this shows no banner (a seek's chunk is on its way)
const SHOW_MS = 30; // chunk mode: the page shows a new frame at most this often while playing
const RESYNC_MS = 1000; // a stall this long asks the server for the chunk again (a seek to the playhead)
const FINISHED = { key: "FINISHED", text: "Chequered flag", color: "#f4f4f4" };

const $ = (sel) => document.querySelector(sel);

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
    this.feedCount = -1;
    this.dirty = true;
    this.want = { playing: false, speed: 1 }; // what the user asked for: restored after a reconnect
    this.prevSpeed = 1;
    this.speedChangedAt = -Infinity;
    this.resumeFrame = null;
    this.sent = []; // actions sent on this connection that await a reply, oldest first
    this.lastSeq = 0;
    this.seekTarget = null; // newest seek wanted but not sent yet (one seek is in flight)
    this.unackedSeek = null; // frame of the seek in flight
    this.everLoaded = false;
    this.failed = false;
    this.history = new History();
    this.ph = null; // chunk mode: the local playhead (Playhead) and the chunks held (ChunkBuffer)
    this.buf = null;
    this.stallSince = null; // chunk mode: when the playhead started waiting for a chunk
    this.stallAt = null; // ... and the position it waits at
    this.live = false; // the connection has loaded the replay: commands are answered
    this.resyncAt = 0;
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
    window.racecast = { state: this.state, viewer: this };
  }

  start() {
    document.title = `${this.replayId} · racecast`;
    $("#viewer").hidden = false;
    this._loading("Connecting…");
    this.together = new Together({
      replayId: this.replayId,
      params: this.params,
      toast: (m) => this._toast(m),
      join: () => {
        // Into the new room: reconnect; the reconnect path then seeks the room to where this page is.
        this.conn.extra = this.together.query();
        this.conn.switchEncoding(this.conn.encoding);
      },
    });
    this.state.room = this.together.state;
    const conn = (this.conn = new ReplayConnection(this.replayId, { encoding: this.params.get("encoding") || "msgpack", extra: this.together.query() }));
    conn.onOpen = () => {
      // A new connection: nothing is awaiting a reply on it yet.
      this.sent = [];
      this.lastSeq = 0;
      this.live = false; // until this connection's loading_complete
      this.state.connected = true;
      this._conn(true);
      if (!this.everLoaded) this._loading("Loading replay…");
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
      this._conn(false);
      const why = this.loadError || reason;
      if (code === 4404) this._error("Replay not found", `There is no replay called “${this.replayId}” on this server.${why ? ` (${why})` : ""}`);
      else this._error("Cannot show this replay", why || `The server closed the connection (code ${code}).`);
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
        this._loading(msg.message || "Loading replay…", p);
        break;
      }
      case "loading_complete":
        await this._loaded(msg);
        break;
      case "loading_error":
        this.failed = true;
        this.loadError = msg.message;
        this.conn.stop({ close: false }); // the server closes; its close code tells "unknown" from "broken"
        this._error("Cannot load this replay", msg.message || "The server could not load it.");
        break;
      case "state": {
        // A reply to a command raises seq; the opening state and the end-of-replay one repeat it.
        const reply = msg.seq == null || msg.seq > this.lastSeq;
        if (msg.seq != null) this.lastSeq = Math.max(this.lastSeq, msg.seq);
        const kind = reply ? this._replied() : null;
        // Adopt the server's word when it answers our latest command (earlier answers would make
        // the controls flicker) or when the replay ended by itself.
        if ((reply && this.sent.length === 0) || msg.ended) {
          this.state.playing = !!msg.playing;
          if (msg.speed != null) this._speedIs(Number(msg.speed));
          this.want.playing = this.state.playing;
          this.want.speed = this.state.speed;
          this._controls();
        }
        if (this.ph) this._paceFrom(msg, kind);
        break;
      }
      case "room":
        this.together.onMessage(msg);
        break;
      case "error":
        this._replied(); // a refused command: state unchanged
        this._toast(msg.message || "The server reported an error.");
        break;
      case "client_error":
        this._toast(msg.message || "A frame could not be decoded.");
        break;
    }
  }

  async _loaded(msg) {
    let raw = msg.metadata;
    if (!raw) {
      const r = await fetch(`/api/replays/${encodeURIComponent(this.replayId)}`);
      if (!r.ok) return this._error("Cannot load this replay", `metadata request failed (HTTP ${r.status})`);
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
    if (this.conn.encoding === "chunks" && !this.ph) this._chunkMode(raw);
    this.live = true;
    this.state.loaded = true;
    this.state.error = null;
    $("#loading").hidden = true;
    $("#reconnect").hidden = true;
    if (this.everLoaded) {
      // Reconnected: put the replay back where it was (or where the user asked to go), playing or not.
      // The opening frame 0 is dropped: frames wait for this seek's acknowledgement.
      const f = this.seekTarget ?? this.unackedSeek ?? this.resumeFrame ?? (this.cur ? this.cur.frame_index : 0);
      this.seekTarget = null;
      this.unackedSeek = null;
      if (!this.together.inControl) {
        this.state.reconnects += 1; // in a room this page does not control: follow it from where it is
        return;
      }
      if (this.ph) this._placePlayhead(f, false);
      this._send({ action: "seek", frame: f });
      if (this.want.playing) this._send({ action: "play", speed: this.want.speed });
      else this._send({ action: "speed", speed: this.want.speed });
      this.state.reconnects += 1;
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
    if (SPEEDS.includes(sp)) this.want.speed = sp;
    if (p.get("play") === "1") this.play();
    else if (this.want.speed !== 1) this.setSpeed(this.want.speed);
  }

  _down({ retryIn, attempt, wasOpen }) {
    this.live = false;
    this.state.connected = false;
    this._conn(false);
    if (this.failed) return;
    if (this.cur) this.resumeFrame = this.cur.frame_index;
    if (this.ph) this._placePlayhead(this.ph.at(performance.now()), false); // no chunks come: stop here
    const secs = (retryIn / 1000).toFixed(retryIn < 1000 ? 2 : 0);
    if (!this.everLoaded) {
      this._loading(attempt > 2 ? `Cannot reach the server — retrying in ${secs} s (attempt ${attempt})` : "Connecting…");
      return;
    }
    const b = $("#reconnect");
    b.hidden = false;
    b.textContent = attempt > 3 ? `Server unreachable — still trying (attempt ${attempt})…` : wasOpen ? "Connection lost — reconnecting…" : "Reconnecting…";
  }

  // -- frames --------------------------------------------------------------------------------------

  _frame(f) {
    if (!this.meta) return;
    if (!this.grid && f.frame_index === 0) this.grid = gridOf(f);
    // After a seek the server acknowledges first, then sends the target frame: anything before the
    // acknowledgement is from the old position.
    if (this.sent.includes("seek")) return;
    this._ingest(f);
  }

  // -- chunk mode -----------------------------------------------------------------------------------

  _chunkMode(raw) {
    const streams = (raw && raw.streams) || {};
    const s = streams[chunkCompression() === "gzip" ? "chunks.gz" : "chunks"] || streams.chunks || {};
    const per = s.frames_per_item > 1 ? s.frames_per_item : 25;
    this.ph = new Playhead(this.meta.nFrames, this.meta.fps);
    this.buf = new ChunkBuffer(per, CHUNKS_AHEAD, this.meta.nFrames);
    if (this.cur) this.ph.set(this.cur.frame_index, false, this.state.speed, performance.now());
  }

  /** One decoded chunk (its frames in order) into the buffer, unless it is from before a pending seek. */
  _chunk(frames) {
    if (!this.meta || !this.buf || !frames.length) return;
    const f0 = frames[0];
    if (!this.grid && f0.frame_index === 0) this.grid = gridOf(f0);
    this.state.frames_received += frames.length;
    // After a seek the server acknowledges first, then sends the target's chunk: chunks before the
    // acknowledgement are from the old position (and one behind the playhead is dropped by the buffer).
    if (this.sent.includes("seek")) return;
    const now = performance.now();
    const k = this.buf.chunkOf(f0.frame_index);
    if (this.ph.playing && k > this.buf.chunkOf(this.ph.at(now)) + this.buf.maxAhead) {
      // The server pushes in order from its own playhead, so a chunk past the window means this
      // page fell behind it (its clock held for a late chunk: a starved tab or decoder). Go on from
      // here, as frame modes skip frames, instead of dropping all it sends and waiting to resync.
      this._placePlayhead(k * this.buf.per, true);
      this.state.chunks_skipped += 1;
    }
    this.buf.add(frames, this.ph.at(now));
    this.state.chunks_held = this.buf.size;
    this.dirty = true;
  }

  /** Move the local playhead (a local seek or pause, a reconnect): the clock restarts from there. */
  _placePlayhead(frame, playing) {
    this.ph.set(frame, playing, null, performance.now());
    this.stallAt = null;
    this.dirty = true;
  }

  /** A `state` message in chunk mode: adopt the server's position, play state and speed. */
  _paceFrom(msg, kind) {
    if (this.sent.includes("seek")) return; // the pending seek's reply places the playhead
    const now = performance.now();
    const ph = this.ph;
    const playing = !!msg.playing && !this.sent.includes("pause");
    const speed = Number(msg.speed);
    // A speed change keeps the picture where it is (the reply's frame is a tick old); the end of
    // the replay (unsolicited) lets a playhead a little behind the server's play out to the end.
    if (kind === "speed" && ph.playing && playing) ph.retime(speed, now);
    else if (kind === null && msg.ended && ph.playing) return;
    else ph.set(Number(msg.frame), playing, speed, now);
    // After a seek, play or connect the server pushes chunks in order from its playhead again.
    if (kind !== "speed" && kind !== "pause") this.buf.epoch += 1;
    // The clock starts with the frame: until its chunk comes (right after this reply) hold here.
    this.stallAt = this.buf.has(Math.floor(ph.frame)) ? null : ph.frame;
    this.dirty = true;
  }

  /** Each animation frame in chunk mode: show the frame at the playhead, or wait for its chunk. */
  _pace(now) {
    const ph = this.ph;
    if (!this.meta || !this.everLoaded) return;
    // Waiting for a chunk (or for the first one after a reply): the clock starts when it is there.
    if (this.stallAt != null && ph.playing) ph.set(this.stallAt, true, null, now);
    let p = ph.at(now);
    let i = Math.floor(p);
    if (ph.playing && p >= ph.last && this.buf.has(ph.last)) this._placePlayhead(ph.last, false); // the end: stop here
    this.buf.trim(p);
    this.state.chunks_held = this.buf.size;
    let f = this.buf.get(i);
    if (!f && ph.playing) {
      // The server sends chunks in order: one held after the missing one means the missing one was
      // skipped (the server's playhead passed it: backpressure, or over 25x where it pushes one
      // chunk per tick) and will not come. Go on from the next one, as frame modes skip frames.
      const j = this.buf.nextAfter(i);
      if (j !== undefined) {
        this._placePlayhead(j, true);
        this.state.chunks_skipped += 1;
        p = i = j;
        this.buf.trim(p); // the window moves with the jump: chunks now behind it go
        this.state.chunks_held = this.buf.size;
        f = this.buf.get(j);
      }
    }
    if (!f) {
      this._stall(now, p, i);
      return;
    }
    if (this.stallSince != null) this._stalled(false);
    this.stallAt = null;
    // The page (board, telemetry, clock) follows at most every SHOW_MS while playing, as in frame
    // modes at 25 Hz; the map moves every animation frame (_positionsAt).
    const cur = this.cur;
    if (f !== cur && (!ph.playing || !cur || f.frame_index < cur.frame_index || now - this.arrival >= SHOW_MS)) this._ingest(f);
  }

  _stall(now, p, i) {
    if (this.ph.playing && !this.state.playing && this.live && !this.sent.includes("seek")) {
      // Playing out after the server's end-of-replay state: every chunk it pushed came before that
      // state, so a missing one was skipped and will never come. Go to the end (its chunk comes).
      this.seek(this.meta.nFrames - 1);
      return;
    }
    if (this.stallAt == null) this.stallAt = p; // the clock waits here: no jump when the chunk comes
    if (this.stallSince == null) {
      this.stallSince = now;
      this.state.buffering = true;
    }
    const waited = now - this.stallSince;
    if (waited >= BUFFERING_SHOWN_MS) this._stalled(true);
    // Chunks the server skipped (backpressure) or a drifted clock: a seek to the playhead makes the
    // server push its chunk at once and start again from there.
    if (waited >= RESYNC_MS && now >= this.resyncAt && this.live && !this.sent.includes("seek")) {
      this.resyncAt = now + RESYNC_MS;
      this.state.resyncs += 1;
      this.seek(i);
    }
  }

  _stalled(on) {
    const b = $("#buffering");
    if (on) {
      if (b.hidden && $("#reconnect").hidden) b.hidden = false;
      return;
    }
    this.stallSince = null;
    this.stallAt = null;
    this.state.buffering = false;
    b.hidden = true;
  }

  _ingest(f) {
    const now = performance.now();
    const cur = this.cur;
    const step = cur ? f.frame_index - cur.frame_index : 0;
    if (this.ph) {
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
    this._header(f);
    this.board.update(f, this.grid, this.fastest, this.selected);
    this.telemetry.update(f);
    this.timeline.set(f.frame_index);
    this.events.update(f.frame_index);
    this.charts.update(f.t);
    this.pitPredict.update(f, this.state.status);
    this._feed(f.t);
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
    const out = new Map();
    if (!cur) return out;
    if (this.ph) {
      // Chunk mode: between the two frames around the playhead, by its fraction.
      const p = this.ph.at(now);
      const i = Math.floor(p);
      const f = this.buf.get(i) || cur;
      const next = f.frame_index === i && p > i ? this.buf.get(i + 1) : null;
      const a = p - i;
      for (const [code, c] of Object.entries(f.drivers)) {
        const n = next && next.drivers[code];
        out.set(code, n ? { x: c.x + (n.x - c.x) * a, y: c.y + (n.y - c.y) * a } : { x: c.x, y: c.y });
      }
      return out;
    }
    const a = this.from ? Math.min(1, Math.max(0, (now - this.arrival) / this.period)) : 1;
    for (const [code, c] of Object.entries(cur.drivers)) {
      const p = this.from && this.from.get(code);
      out.set(code, p ? { x: p.x + (c.x - p.x) * a, y: p.y + (c.y - p.y) * a } : { x: c.x, y: c.y });
    }
    return out;
  }

  _tick(now) {
    requestAnimationFrame((t) => this._tick(t));
    if (this.ph) this._pace(now);
    if (!this.cur || !this.map) return;
    const moving = this.ph ? this.ph.playing && this.stallSince == null : this.from && now - this.arrival < this.period + 20;
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
    const ev = m.event || {};
    $("#event-title").textContent = m.title;
    $("#event-sub").textContent = [ev.year, ev.name && ev.name !== m.title ? ev.name : null, ev.session_type === "R" ? "Race" : ev.session_type]
      .filter(Boolean)
      .join(" · ");
    document.title = `${m.title} · racecast`;
    $("#lap-total").textContent = m.totalLaps || "–";
    $("#lap-input").max = m.totalLaps || 999;
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
    this._bindControls();
    const sel = (this.params.get("select") || "").split(",").filter((c) => m.byCode.has(c));
    sel.forEach((c) => this.select(c, true));
    this.telemetry.setSelection([...this.selected]);
  }

  _bindControls() {
    const click = (id, fn) => $(id).addEventListener("click", (ev) => {
      fn();
      if (ev.detail > 0) ev.currentTarget.blur(); // mouse clicks leave Space to the play toggle
    });
    click("#play", () => this.togglePlay());
    click("#restart", () => this.restart());
    click("#back10", () => this.step(-10));
    click("#back1", () => this.step(-1));
    click("#fwd1", () => this.step(1));
    click("#fwd10", () => this.step(10));
    click("#help-btn", () => this.help());
    click("#labels-toggle", () => this.toggleLabels());
    click("#charts-toggle", () => this.toggleCharts());
    $("#help-close").addEventListener("click", () => this.help(false));
    $("#help").addEventListener("click", (ev) => { if (ev.target.id === "help") this.help(false); });
    const sp = $("#speed");
    sp.innerHTML = SPEEDS.map((s) => `<option value="${s}">${fmtSpeed(s)}</option>`).join("");
    sp.addEventListener("change", () => { this.setSpeed(Number(sp.value)); sp.blur(); });
    $("#lap-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const n = parseInt($("#lap-input").value, 10);
      if (Number.isFinite(n)) this.seekLap(n);
      $("#lap-input").blur();
    });
    $("#track").addEventListener("click", (ev) => {
      const r = ev.currentTarget.getBoundingClientRect();
      const code = this.map.hit(ev.clientX - r.left, ev.clientY - r.top);
      if (code) this.select(code, ev.shiftKey || ev.metaKey || ev.ctrlKey);
    });
    document.addEventListener("keydown", (ev) => this._key(ev));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.cur) { this._show(this.cur); this.dirty = true; }
    });
    this._controls();
  }

  _key(ev) {
    const tag = ev.target && ev.target.tagName;
    if (ev.key === "Escape") {
      if (!$("#help").hidden) this.help(false);
      else this.clearSelection();
      return;
    }
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if ((tag === "BUTTON" || tag === "A") && (ev.key === " " || ev.key === "Enter")) return; // keyboard users activate the focused control
    let handled = true;
    switch (ev.key) {
      case " ": case "k": this.togglePlay(); break;
      case "ArrowLeft": this.step(ev.shiftKey ? -10 : -1); break;
      case "ArrowRight": this.step(ev.shiftKey ? 10 : 1); break;
      case "ArrowUp": this.setSpeed(SPEEDS[Math.min(SPEEDS.length - 1, SPEEDS.indexOf(this._speedIndexValue()) + 1)]); break;
      case "ArrowDown": this.setSpeed(SPEEDS[Math.max(0, SPEEDS.indexOf(this._speedIndexValue()) - 1)]); break;
      case "Home": this.restart(); break;
      case "1": case "2": case "3": case "4": this.setSpeed(SPEED_KEYS[ev.key]); break;
      case "?": this.help(); break;
      case "l": case "L": this.toggleLabels(); break;
      case "c": case "C": this.toggleCharts(); break;
      case "p": case "P": this.pitPredict.toggle(); this.pitPredict.update(this.cur, this.state.status); break;
      case "]": this.events.jump(1, false); break;
      case "[": this.events.jump(-1, false); break;
      case ".": this.events.jump(1, true); break;
      case ",": this.events.jump(-1, true); break;
      case "g": case "G": this.board.setMode(this.board.mode === "gap" ? "interval" : "gap"); break;
      default: handled = false;
    }
    if (handled) ev.preventDefault();
  }

  _speedIndexValue() {
    // The preset nearest the current speed (the server may report one that is not a preset).
    const s = this.want.speed;
    return SPEEDS.reduce((b, x) => (Math.abs(Math.log(x / s)) < Math.abs(Math.log(b / s)) ? x : b), 1);
  }

  // -- actions -------------------------------------------------------------------------------------

  /** In a room this page does not control: say so (the room's host steers) instead of acting. */
  _watching() {
    if (this.together.inControl) return false;
    this._toast("In this room only the host controls playback; you are watching.");
    return true;
  }

  /** Send a command; its reply (a state with a new seq, or an error) comes back in order. */
  _send(msg) {
    this.sent.push(msg.action);
    this.conn.send(msg);
  }

  /** A reply came: the command it answers leaves the queue (returned: "seek", "play", ...). */
  _replied() {
    const kind = this.sent.shift();
    if (kind === "seek" && !this.sent.includes("seek")) {
      this.unackedSeek = null;
      if (this.seekTarget != null) this._sendSeek();
    }
    return kind ?? null;
  }

  play() {
    if (this._watching()) return;
    // On the last frame the server restarts from frame 0.
    this.want.playing = this.state.playing = true;
    this._send({ action: "play", speed: this.want.speed });
    this._controls();
  }

  pause() {
    if (this._watching()) return;
    this.want.playing = this.state.playing = false;
    if (this.ph) this._placePlayhead(this.ph.at(performance.now()), false); // stop now; the reply says where
    this._send({ action: "pause" });
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
    this.want.speed = s;
    this._send({ action: "speed", speed: s });
    this._controls();
  }

  /**
   * Seek to `frame`. Seeks are coalesced: while one awaits the server's ack, only the newest
   * target is kept, so a held arrow key or a dragged scrubber never queues up stale seeks.
   */
  seek(frame) {
    if (!this.meta || this._watching()) return;
    this.seekTarget = Math.max(0, Math.min(this.meta.nFrames - 1, Math.round(frame)));
    // Chunk mode: show the target at once if a held chunk has it; the reply starts the clock there.
    if (this.ph) this._placePlayhead(this.seekTarget, false);
    if (!this.sent.includes("seek")) this._sendSeek(); // else: sent when the pending one is answered
  }

  _sendSeek() {
    this.unackedSeek = this.seekTarget;
    this.seekTarget = null;
    this._send({ action: "seek", frame: this.unackedSeek });
  }

  step(seconds) {
    if (!this.cur) return;
    // Relative to the newest target: five quick presses of → go 5 s on, not 1 s five times.
    // (Chunk mode: the playhead is on a seek's target as soon as it is acknowledged.)
    const here = this.ph ? Math.floor(this.ph.at(performance.now())) : this.cur.frame_index;
    const base = this.seekTarget ?? this.unackedSeek ?? here;
    this.seek(base + seconds * this.meta.fps);
  }

  restart() {
    this.seek(0);
  }

  seekLap(n) {
    const last = this.meta.maxLap || n;
    this.seekTarget = null;
    if (this.ph) this._placePlayhead(this.ph.at(performance.now()), false); // the reply says which frame
    this._send({ action: "seek", lap: Math.max(1, Math.min(last, n)) });
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
    const h = $("#help");
    h.hidden = show === undefined ? !h.hidden : !show;
  }

  // -- rendering of the page chrome -------------------------------------------------------------------

  _controls() {
    const st = this.state;
    const b = $("#play");
    b.dataset.playing = String(st.playing);
    b.setAttribute("aria-label", st.playing ? "Pause" : "Play");
    b.title = st.playing ? "Pause (Space)" : "Play (Space)";
    const sp = $("#speed");
    const v = String(this._speedIndexValue());
    if (sp.value !== v) sp.value = v;
    sp.dataset.speed = st.speed;
    $("#viewer").dataset.playing = String(st.playing);
  }

  _header(f) {
    const m = this.meta;
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
    const leader = Object.values(f.drivers).find((c) => c.position === 1);
    const s = leader && leader.status === "finished" ? FINISHED : TRACK_STATUS[statusAt(m, f.t)];
    const ts = $("#track-status");
    if (ts.dataset.status !== s.key) {
      ts.dataset.status = s.key;
      ts.textContent = s.text;
      ts.style.setProperty("--status", s.color);
      this.state.status = s.key;
    }
    const w = this.weather || weatherAt(m, f.t);
    const wtxt = w ? weatherText(w) : "";
    const we = $("#weather");
    if (we.dataset.text !== wtxt) {
      we.dataset.text = wtxt;
      we.innerHTML = wtxt;
    }
  }

  _feed(t) {
    const n = messagesUntil(this.meta, t);
    if (n === this.feedCount) return;
    this.feedCount = n;
    const ms = this.meta.messages.slice(Math.max(0, n - FEED_MAX), n).reverse();
    const el = $("#feed");
    el.dataset.count = n;
    el.innerHTML = ms.length
      ? ms
          .map(
            (m) => `<li data-cat="${esc(m.category)}"><time>${clock(m.t - this.meta.t0)}</time>` +
              `${m.lap ? `<span class="lap">L${esc(m.lap)}</span>` : ""}<span class="msg">${esc(m.message)}</span></li>`,
          )
          .join("")
      : '<li class="none">No messages yet.</li>';
  }

  _conn(ok) {
    const c = $("#conn");
    c.dataset.connected = String(ok);
    c.title = ok ? "Connected" : "Disconnected";
  }

  _loading(text, progress) {
    if (this.state.error) return;
    $("#loading").hidden = false;
    $("#loading-text").textContent = text;
    const p = $("#loading-progress");
    if (progress != null && Number.isFinite(progress)) {
      p.hidden = false;
      p.value = Math.max(0, Math.min(1, progress));
    }
  }

  _error(title, text) {
    this.state.error = title;
    this.state.loaded = false;
    $("#loading").hidden = true;
    $("#reconnect").hidden = true;
    $("#error").hidden = false;
    $("#viewer").classList.add("failed");
    $("#error-title").textContent = title;
    $("#error-text").textContent = text;
  }

  _toast(text) {
    const t = $("#toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (t.hidden = true), 4000);
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

function weatherText(w) {
  const parts = [];
  if (w.air_temp != null) parts.push(`<span title="Air temperature">Air <b>${Math.round(w.air_temp)}°</b></span>`);
  if (w.track_temp != null) parts.push(`<span title="Track temperature">Track <b>${Math.round(w.track_temp)}°</b></span>`);
  if (w.wind_speed != null) parts.push(`<span title="Wind">Wind <b>${Number(w.wind_speed).toFixed(1)}</b> m/s</span>`);
  if (w.rainfall) parts.push('<span class="rain" title="Rain">Rain</span>');
  else if (w.humidity != null) parts.push(`<span title="Humidity">Hum <b>${Math.round(w.humidity)}%</b></span>`);
  return parts.join("");
}
