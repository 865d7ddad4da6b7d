// Leaderboard: one DOM row per driver, moved (animated) to its position; text touched only on change.

import { compound, gap as fmtGap, lapTime } from "./format.js";

const ROW_H = 26;

export class Leaderboard {
  constructor(list, toggle, { onSelect }) {
    this.list = list;
    this.toggle = toggle;
    this.onSelect = onSelect;
    this.mode = "gap"; // or "interval"
    this.timed = false; // a session ranked by lap times (qualifying, practice): no "laps behind", no places vs the grid
    this.rows = new Map();
    toggle.addEventListener("click", (ev) => {
      this.setMode(this.mode === "gap" ? "interval" : "gap");
      if (ev.detail > 0) toggle.blur(); // mouse clicks leave Space to the play toggle
    });
    this.setMode("gap");
  }

  setMode(mode) {
    this.mode = mode;
    this.toggle.dataset.mode = mode;
    this.toggle.textContent = mode === "gap" ? "Gap" : "Interval";
    this.toggle.title = `Showing ${mode === "gap" ? "gap to the leader" : "interval to the car ahead"} (G to switch)`;
    this.list.dataset.mode = mode;
    if (this.last) this.update(...this.last);
  }

  setDrivers(drivers) {
    this.list.textContent = "";
    this.rows.clear();
    for (const d of drivers) {
      const li = document.createElement("li");
      li.className = "row";
      li.dataset.code = d.code;
      li.style.setProperty("--team", d.color);
      li.title = `${d.name}${d.team ? " — " + d.team : ""}`;
      li.innerHTML =
        '<span class="pos"></span><span class="code"></span><span class="gap"></span>' +
        '<span class="tyre"><i></i><em></em></span><span class="delta"></span><span class="flags"></span>';
      li.querySelector(".code").textContent = d.code;
      li.addEventListener("click", (ev) => this.onSelect(d.code, ev.shiftKey || ev.metaKey || ev.ctrlKey));
      this.list.appendChild(li);
      const cells = {};
      for (const el of li.children) cells[el.className] = el;
      this.rows.set(d.code, { li, cells, cache: {} });
    }
    this.list.style.height = `${drivers.length * ROW_H}px`;
  }

  /**
   * Show one frame. `grid` maps code -> starting position (or null), `fastest` is {code, time} or null,
   * `selected` a Set of codes.
   */
  update(frame, grid, fastest, selected) {
    this.last = [frame, grid, fastest, selected];
    const cars = frame.drivers;
    const order = Object.keys(cars).sort((a, b) => cars[a].position - cars[b].position);
    const leader = cars[order[0]];
    order.forEach((code, k) => {
      const row = this.rows.get(code);
      if (!row) return;
      const c = cars[code];
      const ahead = k > 0 ? cars[order[k - 1]] : null;
      const dns = c.status === "dns";
      const out = c.status === "out" || dns;
      let gapText;
      if (dns) gapText = "DNS";
      else if (out) gapText = "OUT";
      else if (k === 0) gapText = this.mode === "gap" ? "Leader" : "Interval";
      else if (this.mode === "gap") gapText = fmtGap(c.gap, this.timed ? 0 : Math.floor((leader.race_progress ?? 0) - (c.race_progress ?? 0)));
      else gapText = fmtGap(c.interval, this.timed ? 0 : Math.floor((ahead.race_progress ?? 0) - (c.race_progress ?? 0)));
      const tyre = compound(c.tyre);
      const g = grid ? grid[code] : null;
      const delta = g && !out && !this.timed ? g - c.position : null;
      const flags = [];
      if (c.status === "pit") flags.push('<b class="pit">PIT</b>');
      if (c.status === "finished") flags.push('<b class="fin" title="Finished">FIN</b>');
      if (fastest && fastest.code === code) flags.push(`<b class="fl" title="Fastest lap ${lapTime(fastest.time)}">FL</b>`);
      const cls = `row${out ? " out" : ""}${c.status === "pit" ? " in-pit" : ""}${selected.has(code) ? " selected" : ""}`;
      set(row, "pos", c.position, (el, v) => (el.textContent = v));
      set(row, "gap", gapText, (el, v) => (el.textContent = v));
      set(row, "tyre", `${tyre.letter}|${c.tyre_age}`, (el) => {
        el.title = `${tyre.name}, ${c.tyre_age} lap${c.tyre_age === 1 ? "" : "s"} old`;
        el.style.setProperty("--tyre", tyre.color);
        el.firstChild.textContent = tyre.letter;
        el.lastChild.textContent = c.tyre_age;
      });
      set(row, "delta", delta, (el, v) => {
        el.className = `delta ${v > 0 ? "up" : v < 0 ? "down" : "same"}`;
        el.textContent = v == null ? "" : v > 0 ? `▲${v}` : v < 0 ? `▼${-v}` : "–";
        el.title = v == null ? "" : `started P${g}`;
      });
      set(row, "flags", flags.join(""), (el, v) => (el.innerHTML = v));
      if (row.cache.cls !== cls) row.li.className = row.cache.cls = cls;
      if (row.cache.y !== k) {
        row.cache.y = k;
        row.li.style.transform = `translateY(${k * ROW_H}px)`;
        row.li.dataset.position = c.position;
      }
    });
  }
}

function set(row, key, value, apply) {
  if (row.cache[key] === value) return;
  row.cache[key] = value;
  apply(row.cells[key], value);
}
