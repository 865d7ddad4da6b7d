// Chunk mode's player: the page paces playback itself (docs/protocol.md, "Chunk mode").
//
// One-second chunks arrive ahead of the playhead (ChunkBuffer); each animation frame the player
// shows the frame at the local playhead (Playhead, paced by the page's clock) and gives the map
// the cars interpolated between it and the next frame. A playhead that reaches a chunk not yet
// received holds the last frame ("buffering") and waits; a long wait asks the server for the chunk
// again (a seek to the playhead: "resync"). No DOM here: the page is reached through `host`.

import { ChunkBuffer, Playhead } from "./playhead.js";

export const CHUNKS_AHEAD = 10; // chunks kept beyond the playhead's (the server pushes at most 8 ahead)
export const BUFFERING_SHOWN_MS = 300; // a stall shorter than this shows no banner (a seek's chunk is on its way)
export const SHOW_MS = 30; // the page shows a new frame at most this often while playing
export const RESYNC_MS = 1000; // a stall this long asks the server for the chunk again (a seek to the playhead)

export class ChunkPlayer {
  /**
   * @param {object} host what the player needs of the page:
   *   state     the page's state (the chunk counters, buffering, playing, speed)
   *   pending(action)  whether a command awaits its reply ("seek", "pause")
   *   live()    whether the connection answers commands
   *   show(f)   put frame `f` on the page (board, clock, ...)
   *   seek(i)   seek the replay (resyncs, the end after the server's)
   *   banner(on)  show or hide the buffering banner
   *   changed() the picture changed: draw at the next animation frame
   * @param {number} nFrames, fps  the replay's
   * @param {number} per  frames per chunk
   */
  constructor(host, { nFrames, fps, per }) {
    this.host = host;
    this.ph = new Playhead(nFrames, fps);
    this.buf = new ChunkBuffer(per, CHUNKS_AHEAD, nFrames);
    this.stallSince = null; // when the playhead started waiting for a chunk
    this.stallAt = null; // ... and the position it waits at
    this.resyncAt = 0;
  }

  /** Fractional frame of the playhead at `now`. */
  at(now) {
    return this.ph.at(now);
  }

  /** True while the picture moves by itself (playing, not waiting for a chunk). */
  get moving() {
    return this.ph.playing && this.stallSince == null;
  }

  /** Move the local playhead (a local seek or pause, a reconnect): the clock restarts from there. */
  place(frame, playing, now) {
    this.ph.set(frame, playing, null, now);
    this.stallAt = null;
    this.host.changed();
  }

  /** One decoded chunk (its frames in order) into the buffer, unless it is from before a pending seek. */
  add(frames, now) {
    const st = this.host.state;
    st.frames_received += frames.length;
    // After a seek the server acknowledges first, then sends the target's chunk: chunks before the
    // acknowledgement are from the old position (and one behind the playhead is dropped by the buffer).
    if (this.host.pending("seek")) return;
    const k = this.buf.chunkOf(frames[0].frame_index);
    if (this.ph.playing && k > this.buf.chunkOf(this.ph.at(now)) + this.buf.maxAhead) {
      // The server pushes in order from its own playhead, so a chunk past the window means this
      // page fell behind it (its clock held for a late chunk: a starved tab or decoder). Go on from
      // here, as frame modes skip frames, instead of dropping all it sends and waiting to resync.
      this.place(k * this.buf.per, true, now);
      st.chunks_skipped += 1;
    }
    this.buf.add(frames, this.ph.at(now));
    st.chunks_held = this.buf.size;
    this.host.changed();
  }

  /** A `state` message answering `kind` (null: unsolicited): adopt the server's position, play state and speed. */
  paceFrom(msg, kind, now) {
    if (this.host.pending("seek")) return; // the pending seek's reply places the playhead
    const ph = this.ph;
    const playing = !!msg.playing && !this.host.pending("pause");
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
    this.host.changed();
  }

  /** Each animation frame: show the frame at the playhead (`cur`: the one shown, since `arrival` ms), or wait for its chunk. */
  pace(now, cur, arrival) {
    const ph = this.ph;
    const st = this.host.state;
    // Waiting for a chunk (or for the first one after a reply): the clock starts when it is there.
    if (this.stallAt != null && ph.playing) ph.set(this.stallAt, true, null, now);
    let p = ph.at(now);
    let i = Math.floor(p);
    if (ph.playing && p >= ph.last && this.buf.has(ph.last)) this.place(ph.last, false, now); // the end: stop here
    this.buf.trim(p);
    st.chunks_held = this.buf.size;
    let f = this.buf.get(i);
    if (!f && ph.playing) {
      // The server sends chunks in order: one held after the missing one means the missing one was
      // skipped (the server's playhead passed it: backpressure, or over 25x where it pushes one
      // chunk per tick) and will not come. Go on from the next one, as frame modes skip frames.
      const j = this.buf.nextAfter(i);
      if (j !== undefined) {
        this.place(j, true, now);
        st.chunks_skipped += 1;
        p = i = j;
        this.buf.trim(p); // the window moves with the jump: chunks now behind it go
        st.chunks_held = this.buf.size;
        f = this.buf.get(j);
      }
    }
    if (!f) {
      this._stall(now, p, i);
      return;
    }
    if (this.stallSince != null) this.stalled(false);
    this.stallAt = null;
    // The page (board, telemetry, clock) follows at most every SHOW_MS while playing, as in frame
    // modes at 25 Hz; the map moves every animation frame (positions).
    if (f !== cur && (!ph.playing || !cur || f.frame_index < cur.frame_index || now - arrival >= SHOW_MS)) this.host.show(f);
  }

  _stall(now, p, i) {
    const host = this.host;
    if (this.ph.playing && !host.state.playing && host.live() && !host.pending("seek")) {
      // Playing out after the server's end-of-replay state: every chunk it pushed came before that
      // state, so a missing one was skipped and will never come. Go to the end (its chunk comes).
      host.seek(this.ph.last);
      return;
    }
    if (this.stallAt == null) this.stallAt = p; // the clock waits here: no jump when the chunk comes
    if (this.stallSince == null) {
      this.stallSince = now;
      host.state.buffering = true;
    }
    const waited = now - this.stallSince;
    if (waited >= BUFFERING_SHOWN_MS) host.banner(true);
    // Chunks the server skipped (backpressure) or a drifted clock: a seek to the playhead makes the
    // server push its chunk at once and start again from there.
    if (waited >= RESYNC_MS && now >= this.resyncAt && host.live() && !host.pending("seek")) {
      this.resyncAt = now + RESYNC_MS;
      host.state.resyncs += 1;
      host.seek(i);
    }
  }

  /** The wait for a chunk is over (on: the banner shows). */
  stalled(on) {
    if (on) {
      this.host.banner(true);
      return;
    }
    this.stallSince = null;
    this.stallAt = null;
    this.host.state.buffering = false;
    this.host.banner(false);
  }

  /** Car positions at `now`: between the two frames around the playhead, by its fraction (`cur` when none is held). */
  positions(now, cur) {
    const out = new Map();
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
}
