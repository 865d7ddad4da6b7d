// Chunk mode's client side (plain ES module, no DOM: tested in Node too).
//
// In chunk mode the server pushes one-second chunks ahead of the playhead and the client paces
// playback itself (docs/protocol.md, "Chunk mode"):
//   Playhead     where the replay is now: `frame + elapsed × fps × speed` from the last anchor
//                (a `state` message, a local seek or pause, or a hold while buffering), clamped
//                to the replay, so it stops on the last frame.
//   ChunkBuffer  the decoded frames of the chunks held, looked up by frame index; bounded: chunks
//                behind the playhead (all but the one before it) and chunks too far ahead are
//                dropped, so memory never grows with the replay or with a fast server.

/** A local playhead paced by the page's clock (`now` in ms, e.g. `performance.now()`). */
export class Playhead {
  constructor(nFrames, fps) {
    this.last = Math.max(0, nFrames - 1);
    this.fps = fps;
    this.frame = 0; // position at `time`
    this.time = 0;
    this.playing = false;
    this.speed = 1;
  }

  /** Fractional frame at `now`, within [0, last]. */
  at(now) {
    const p = this.playing ? this.frame + (Math.max(0, now - this.time) / 1000) * this.fps * this.speed : this.frame;
    return Math.min(this.last, Math.max(0, p));
  }

  /** Adopt a position: the server's word (a `state` message) or a local seek/pause. */
  set(frame, playing, speed, now) {
    this.frame = Math.min(this.last, Math.max(0, frame));
    this.time = now;
    this.playing = !!playing && this.frame < this.last;
    if (speed != null && Number.isFinite(speed) && speed > 0) this.speed = speed;
  }

  /** Change the speed from `now` on without moving (no jump on a speed change). */
  retime(speed, now) {
    this.set(this.at(now), this.playing, speed, now);
  }

  /** Stay where the playhead is now while it keeps its play state (buffering: the clock waits). */
  hold(now) {
    this.frame = this.at(now);
    this.time = now;
  }

  /** True once a playing playhead has reached the last frame (it stays there). */
  atEnd(now) {
    return this.at(now) >= this.last;
  }
}

/** Decoded chunks by chunk index; `per` frames per chunk (the last one may be shorter). */
export class ChunkBuffer {
  /**
   * @param {number} per frames per chunk
   * @param {number} maxAhead chunks kept beyond the playhead's chunk (the server pushes at most
   *   8 ahead, docs/protocol.md); with the playhead's chunk and the one before it, at most
   *   maxAhead + 2 chunks are held.
   * @param {number} nFrames frames in the replay (only the last chunk may be shorter than `per`)
   */
  constructor(per, maxAhead = 10, nFrames = Infinity) {
    this.per = per;
    this.nFrames = nFrames;
    this.maxAhead = maxAhead;
    this.chunks = new Map(); // chunk index -> [frame, ...]
    this.epochOf = new Map(); // chunk index -> the epoch it arrived in
    this.epoch = 0; // raised when the server restarts its chunk sequence (a seek, play, connect)
    this.base = 0; // the playhead's chunk at the last trim
    this.received = 0;
    this.dropped = 0;
  }

  get size() {
    return this.chunks.size;
  }

  get maxChunks() {
    return this.maxAhead + 2;
  }

  chunkOf(frame) {
    return Math.floor(frame / this.per);
  }

  /**
   * Keep the frames of one chunk (decoded, in order) if it is within the window around the
   * playhead frame `at`; returns whether it was kept. A chunk behind the playhead (e.g. from
   * before a seek, arriving late) or too far ahead is dropped.
   */
  add(frames, at) {
    this.received += 1;
    if (!frames || !frames.length) return false;
    const k = this.chunkOf(frames[0].frame_index);
    const whole = frames.length === Math.min(this.per, this.nFrames - k * this.per);
    if (!whole || frames[0].frame_index !== k * this.per || frames.some((f, j) => f.frame_index !== k * this.per + j)) {
      this.dropped += 1; // not a chunk of this replay's grid: never shown
      return false;
    }
    this.trim(at);
    if (k < this.base - 1 || k > this.base + this.maxAhead) {
      this.dropped += 1;
      return false;
    }
    this.chunks.set(k, frames);
    this.epochOf.set(k, this.epoch);
    return true;
  }

  /** Drop the chunks outside the window of the playhead frame `at`. */
  trim(at) {
    const base = this.chunkOf(Math.max(0, Math.floor(at)));
    this.base = base;
    for (const k of this.chunks.keys()) {
      if (k < base - 1 || k > base + this.maxAhead) {
        this.chunks.delete(k);
        this.epochOf.delete(k);
      }
    }
  }

  /** Frame `i` if a held chunk has it. */
  get(i) {
    const c = this.chunks.get(this.chunkOf(i));
    if (!c) return undefined;
    return c[i - this.chunkOf(i) * this.per];
  }

  /**
   * First frame of the earliest chunk after frame `i`'s that arrived in the current epoch
   * (undefined: none). The server sends chunks in order from where it (re)started, so such a
   * chunk means the ones between were skipped; chunks held from before the restart say nothing.
   */
  nextAfter(i) {
    const k0 = this.chunkOf(i);
    let best;
    for (const [k, e] of this.epochOf) if (e === this.epoch && k > k0 && (best === undefined || k < best)) best = k;
    return best === undefined ? undefined : best * this.per;
  }

  has(i) {
    return this.get(i) !== undefined;
  }

  clear() {
    this.chunks.clear();
    this.epochOf.clear();
  }

  /** Indices of the held chunks, ascending (for the test hook). */
  held() {
    return [...this.chunks.keys()].sort((a, b) => a - b);
  }
}
