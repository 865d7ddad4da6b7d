// Commands to the server and their acknowledgements (plain ES module, no DOM: tested in Node).
//
// The server answers every command in order, either with a `state` message carrying a higher
// `seq` or with an `error` (docs/protocol.md). The page keeps the actions it sent on this
// connection that await a reply, oldest first, so it can tell which command a reply answers,
// ignore frames from before a seek's acknowledgement, and adopt the server's word only when it
// answers the latest command (earlier answers would make the controls flicker).
//
// Seeks are coalesced: while one awaits its reply only the newest target is kept and sent when
// the reply comes, so a held arrow key or a dragged scrubber never queues up stale seeks.

export class Commands {
  /** send(msg): puts one command on the wire (the connection's send). */
  constructor(send) {
    this._wire = send;
    this.sent = []; // actions sent on this connection that await a reply, oldest first
    this.lastSeq = 0;
    this.seekTarget = null; // newest seek wanted but not sent yet (one seek is in flight)
    this.unackedSeek = null; // frame of the seek in flight
    this.want = { playing: false, speed: 1 }; // what the user asked for: restored after a reconnect
  }

  /** A new connection: nothing awaits a reply on it yet. */
  reset() {
    this.sent = [];
    this.lastSeq = 0;
  }

  /** Whether an `action` ("seek", "pause", ...) awaits its reply. */
  pending(action) {
    return this.sent.includes(action);
  }

  /** Send a command; its reply (a state with a new seq, or an error) comes back in order. */
  send(msg) {
    this.sent.push(msg.action);
    this._wire(msg);
  }

  /** A reply came: the command it answers leaves the queue (returned: "seek", "play", ... or null). */
  replied() {
    const kind = this.sent.shift();
    if (kind === "seek" && !this.pending("seek")) {
      this.unackedSeek = null;
      if (this.seekTarget != null) this._sendSeek();
    }
    return kind ?? null;
  }

  /**
   * A `state` message: {kind, adopt}. `kind` is the action it answers (null: not a reply — the
   * opening state, or the end of the replay, repeat the last seq); `adopt` says whether the page
   * should take the server's play state and speed (it answers the latest command, or the replay ended).
   */
  onState(msg) {
    const reply = msg.seq == null || msg.seq > this.lastSeq;
    if (msg.seq != null) this.lastSeq = Math.max(this.lastSeq, msg.seq);
    const kind = reply ? this.replied() : null;
    const adopt = (reply && this.sent.length === 0) || !!msg.ended;
    if (adopt) {
      this.want.playing = !!msg.playing;
      if (msg.speed != null) this.want.speed = Number(msg.speed);
    }
    return { kind, adopt };
  }

  /** Seek to `frame` (already clamped to the replay); sent now, or when the pending seek is answered. */
  seek(frame) {
    this.seekTarget = frame;
    if (!this.pending("seek")) this._sendSeek();
  }

  _sendSeek() {
    this.unackedSeek = this.seekTarget;
    this.seekTarget = null;
    this.send({ action: "seek", frame: this.unackedSeek });
  }

  /** Where the newest seek goes (wanted or in flight), else `here`: relative steps add up. */
  target(here) {
    return this.seekTarget ?? this.unackedSeek ?? here;
  }

  /** After a reconnect: the frame to put the replay back on (the seek wanted or in flight, else `here`); forgets both. */
  takeResume(here) {
    const f = this.target(here);
    this.seekTarget = null;
    this.unackedSeek = null;
    return f;
  }

  play() {
    this.want.playing = true;
    this.send({ action: "play", speed: this.want.speed });
  }

  pause() {
    this.want.playing = false;
    this.send({ action: "pause" });
  }

  speed(s) {
    this.want.speed = s;
    this.send({ action: "speed", speed: s });
  }

  /** Seek to the start of lap `n` (the server finds the frame); drops a coalesced seek target. */
  seekLap(n) {
    this.seekTarget = null;
    this.send({ action: "seek", lap: n });
  }

  /** After a reconnect: seek back to `frame` and restore play/pause and speed. */
  restore(frame) {
    this.send({ action: "seek", frame });
    if (this.want.playing) this.send({ action: "play", speed: this.want.speed });
    else this.send({ action: "speed", speed: this.want.speed });
  }
}
