// "Watch together": make a room for this replay, show the link to share, show who is in it.
//
// A room is one playback shared by everyone who opens its link (docs/protocol.md, "Rooms"):
// the page joins with `?room=ROOM` on its WebSocket (and the host token, kept in this tab's
// sessionStorage, so the creator keeps control across reloads). The server's `room` messages
// say how many watch and whether this page controls; the rest (state acknowledgements, frames)
// is the usual protocol, so the viewer needs no other change to follow the room.

const $ = (sel) => document.querySelector(sel);

/** The shareable link of a room: the replay page with `room=` (never the host token). */
export function roomLink(replayId, room, base = location) {
  const u = new URL(base.pathname || "/", base.origin);
  u.searchParams.set("replay", replayId);
  u.searchParams.set("room", room);
  return u.toString();
}

export class Together {
  /** `join(room, token)` reconnects the page's socket into the room. */
  constructor({ replayId, params, join, toast }) {
    this.replayId = replayId;
    this.join = join;
    this.toast = toast;
    this.room = params.get("room");
    this.token = this.room ? sessionStorage.getItem(`racecast.room.${this.room}`) : null;
    this.info = null; // the last `room` message
    this.button = $("#together");
    this.badge = $("#room-badge");
    this.panel = $("#room-panel");
    this.button.addEventListener("click", () => (this.room ? this.toggle() : this.create()));
    $("#room-copy").addEventListener("click", () => this.copy());
    $("#room-close").addEventListener("click", () => (this.panel.hidden = true));
    this.state = { room: this.room, members: 0, control: null, you_control: null, link: this.room ? roomLink(replayId, this.room) : null, copied: false };
    this._render();
  }

  /** The WebSocket query for this page's room ("" when watching alone). */
  query() {
    if (!this.room) return "";
    return `room=${encodeURIComponent(this.room)}` + (this.token ? `&token=${encodeURIComponent(this.token)}` : "");
  }

  async create() {
    this.button.disabled = true;
    try {
      const r = await fetch("/api/rooms", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ replay: this.replayId, control: "host" }),
      });
      const body = await r.json().catch(() => ({}));
      if (r.status !== 201) throw new Error(body.detail || `HTTP ${r.status}`);
      this.room = body.room;
      this.token = body.host_token;
      sessionStorage.setItem(`racecast.room.${this.room}`, this.token);
      const u = new URL(location.href);
      u.searchParams.set("room", this.room);
      history.replaceState(null, "", u);
      this.state.room = this.room;
      this.state.link = roomLink(this.replayId, this.room);
      this.panel.hidden = false;
      this._render();
      this.join(this.room, this.token); // the page's position carries over into the room
    } catch (e) {
      this.toast(`Cannot start a room: ${e.message || e}`);
    } finally {
      this.button.disabled = false;
    }
  }

  toggle() {
    this.panel.hidden = !this.panel.hidden;
  }

  async copy() {
    const input = $("#room-link");
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      document.execCommand?.("copy"); // no clipboard permission (plain http): the selected text
    }
    this.state.copied = true;
    $("#room-copy").textContent = "Copied";
    setTimeout(() => ($("#room-copy").textContent = "Copy link"), 1500);
  }

  /** A `room` message from the server. */
  onMessage(msg) {
    this.info = msg;
    Object.assign(this.state, { members: msg.members, control: msg.control, you_control: msg.you_control });
    this._render();
  }

  /** Whether this page's commands move the room (true when watching alone). */
  get inControl() {
    return !this.room || this.state.you_control !== false;
  }

  _render() {
    const s = this.state;
    this.button.textContent = s.room ? "Room" : "Watch together";
    this.button.setAttribute("aria-expanded", String(!this.panel.hidden));
    this.badge.hidden = !s.room;
    if (!s.room) return;
    const who = s.control === "everyone" ? "everyone controls" : s.you_control ? "you control" : "the host controls";
    this.badge.textContent = `${s.members} watching · ${who}`;
    this.badge.dataset.members = String(s.members);
    this.badge.dataset.control = s.you_control ? "you" : s.control || "";
    $("#room-link").value = s.link || "";
    $("#room-status").textContent = `${s.members} ${s.members === 1 ? "person" : "people"} in this room; ${who}.`;
    document.body.dataset.roomControl = s.you_control === false ? "watching" : "control";
  }
}
