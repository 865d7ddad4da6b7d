// "If he pitted now": where the selected car would rejoin (place, and the cars just ahead and
// behind with the gaps), from the time a stop has cost in this race so far. Each pit_stop event
// carries its measured loss (loss_s: in-lap + out-lap against the same laps of cars that did not
// stop, computed at ingest) and whether those laps were neutralised (laps_neutralised: SC, VSC).
// Under a safety car or VSC the losses measured under one are used; with none measured yet, the
// green-flag loss scaled by NEUTRAL_FACTOR (an estimate, said so on screen).
//
// Where the factors come from (docs/viewer.md, "Pit rejoin prediction"):
//   SC  0.5   measured: 2025 Dutch GP (../shared/realdata/2025_15_R, FastF1 source), median loss of
//             the 27 stops made under a safety car 9.4 s vs 18.3 s for the 8 green-flag stops
//             (ratio 0.51); tests/test_events_real.py checks it stays within 0.1 of every real
//             race with SC stops.
//   VSC 0.65  not measured: no stop in the real sessions fell under a VSC. Under a VSC every car
//             keeps a delta time ~30-40 % slower than racing pace (an SC bunches the field far
//             slower), so a stop saves less than under an SC: between the SC's 0.5 and green's 1.
//   RED       as SC (not measured either: the race resumes behind the safety car).

export const NEUTRAL_FACTOR = { SC: 0.5, VSC: 0.65, RED: 0.5 };

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : null;
}

/**
 * The pit loss to expect at race time `t` under track condition `neutral` (null, "SC", "VSC",
 * "RED"): {loss, n, basis} from the stops completed before `t`; null when none was measured.
 */
export function pitLoss(events, t, neutral) {
  const done = events.filter((e) => e.kind === "pit_stop" && e.loss_s != null && e.t_out <= t);
  const green = done.filter((e) => !e.laps_neutralised).map((e) => e.loss_s);
  if (neutral) {
    const same = done.filter((e) => e.laps_neutralised === neutral || (neutral !== "VSC" && e.laps_neutralised && e.laps_neutralised !== "VSC")).map((e) => e.loss_s);
    if (same.length) return { loss: median(same), n: same.length, basis: `${same.length} stop${same.length > 1 ? "s" : ""} under ${neutral}` };
    if (green.length) return { loss: median(green) * NEUTRAL_FACTOR[neutral], n: green.length, basis: `${green.length} green stop${green.length > 1 ? "s" : ""} × ${NEUTRAL_FACTOR[neutral]} (${neutral}, estimate)` };
    return null;
  }
  if (!green.length) return null;
  return { loss: median(green), n: green.length, basis: `${green.length} stop${green.length > 1 ? "s" : ""} so far` };
}

/**
 * Where `code` would rejoin from frame `f` (decoded frame: drivers[code].{gap, status, position})
 * after losing `loss` seconds: {position, ahead: {code, gap}, behind: {code, gap}} (gaps in s, to
 * the car; null at the front/back), or null when the car is not running.
 */
export function predictRejoin(f, code, loss) {
  const gapOf = (d) => (d.position === 1 ? 0 : d.gap); // the leader's gap may be blank
  const me = f.drivers[code];
  if (!me || me.status !== "running" || !Number.isFinite(gapOf(me))) return null;
  const mine = gapOf(me) + loss;
  const others = Object.entries(f.drivers)
    .filter(([c, d]) => c !== code && (d.status === "running" || d.status === "pit") && Number.isFinite(gapOf(d)))
    .map(([c, d]) => ({ code: c, gap: gapOf(d) }))
    .sort((a, b) => a.gap - b.gap);
  const ahead = others.filter((o) => o.gap <= mine);
  const behind = others.filter((o) => o.gap > mine);
  const a = ahead[ahead.length - 1], b = behind[0];
  return {
    position: ahead.length + 1,
    now: me.position,
    ahead: a ? { code: a.code, gap: mine - a.gap } : null,
    behind: b ? { code: b.code, gap: b.gap - mine } : null,
  };
}

/** The panel: shown on demand (P) for the first selected driver, updated with the replay. */
export class PitPredictPanel {
  constructor(root, { events, selected }) {
    this.root = root;
    this.events = events; // () => the event list
    this.selected = selected;
  }

  get visible() {
    return !this.root.hidden;
  }

  toggle(show) {
    this.root.hidden = show === undefined ? !this.root.hidden : !show;
  }

  /** Recompute for frame `f` at track status `status` (key: GREEN, SC, VSC, ...). */
  update(f, status) {
    if (!this.visible || !f) return;
    const code = this.selected()[0];
    const ds = this.root.dataset;
    const say = (html) => { if (this.root.innerHTML !== html) this.root.innerHTML = html; };
    if (!code) {
      Object.assign(ds, { driver: "", position: "" });
      return say(`<b>Pit now?</b> Select a driver to see where it would rejoin.`);
    }
    const neutral = status === "SC" || status === "RED" ? status : status === "VSC" || status === "VSC_ENDING" ? "VSC" : null;
    const loss = pitLoss(this.events(), f.t, neutral);
    if (!loss) {
      Object.assign(ds, { driver: code, position: "" });
      return say(`<b>${code} pits now?</b> No stop measured yet in this race.`);
    }
    const p = predictRejoin(f, code, loss.loss);
    if (!p) {
      Object.assign(ds, { driver: code, position: "" });
      return say(`<b>${code}</b> is not on track.`);
    }
    Object.assign(ds, { driver: code, position: String(p.position), loss: loss.loss.toFixed(2) });
    const near = [p.ahead ? `${p.ahead.gap.toFixed(1)} s behind ${p.ahead.code}` : "in the lead", p.behind ? `${p.behind.gap.toFixed(1)} s ahead of ${p.behind.code}` : null]
      .filter(Boolean).join(", ");
    say(`<b>${code} pits now:</b> rejoins <b>P${p.position}</b> (now P${p.now}), ${near}` +
      `<span class="basis">pit loss ${loss.loss.toFixed(1)} s · ${loss.basis}</span>`);
  }
}
