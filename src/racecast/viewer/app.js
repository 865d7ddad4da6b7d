// Entry point: `/?replay=ID` opens the viewer, `/` lists the replays.

import { clock, esc } from "./format.js";
import { Viewer } from "./viewer.js";

const params = new URLSearchParams(location.search);
const replay = params.get("replay");

if (replay) {
  new Viewer(replay, params).start();
} else {
  showStart();
}

async function showStart() {
  document.getElementById("start").hidden = false;
  const box = document.getElementById("replay-list");
  window.racecast = { state: { page: "start", loaded: false, replays: null, error: null } };
  let rows;
  try {
    const r = await fetch("/api/replays");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    rows = await r.json();
  } catch (e) {
    window.racecast.state.error = String(e);
    box.innerHTML = `<p class="error-text">Cannot reach the racecast server (${esc(e.message || e)}). Reload to try again.</p>`;
    return;
  }
  const ok = rows.filter((r) => !r.error);
  window.racecast.state.replays = ok.map((r) => r.id);
  window.racecast.state.loaded = true;
  if (!rows.length) {
    box.innerHTML = '<p class="muted">No replays on this server yet. Make one with <code>racecast simulate</code> or <code>racecast demo</code>.</p>';
    return;
  }
  box.innerHTML =
    '<ul class="replays">' +
    rows
      .map((r) =>
        r.error
          ? `<li class="damaged"><span class="title">${esc(r.id)}</span><span class="muted">damaged: ${esc(r.error)}</span></li>`
          : `<li><a href="?replay=${encodeURIComponent(r.id)}" data-id="${esc(r.id)}">` +
            `<span class="title">${esc(r.title || r.id)}</span><span class="id">${esc(r.id)}</span>` +
            `<span class="facts">${r.date ? `<span>${esc(r.date)}</span>` : ""}<span>${r.laps ?? "?"} laps</span>` +
            `<span>${clock(r.duration)}</span><span>${r.drivers ?? "?"} cars</span></span></a></li>`,
      )
      .join("") +
    "</ul>";
}
