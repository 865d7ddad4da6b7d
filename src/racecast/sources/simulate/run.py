"""The 10 Hz simulation: every car at once (numpy over drivers), one small step function per concern.

Each step of :func:`run_race` reads and updates one :class:`_State`: where everyone is (laps, pit
windows), traffic (the car ahead, blue flags), the target speed (reference pace, DRS and tow, the
safety car, the pit lane, the cool-down lap, overtaking), the speed and distance reached, pit
events, lateral position, race control (the incident, the retirement, the safety car) and the
leader's laps (DRS, the chequered flag, finishers). The order of the steps, and of the operations
inside them, is the race: changing either changes the bytes of every simulated race.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...race import Drs, RaceControlMessage
from .params import (
    BRK0,
    BRK_AERO,
    DIRTY_AIR,
    DRAG,
    DRS_BOOST,
    GRID_SPACING,
    GRID_STAGGER,
    GRID_TIME,
    PIT_IN_BEFORE,
    PIT_OUT_AFTER,
    PIT_SPEED,
    POLE_BEHIND,
    POWER,
    RETIRE_OFFSET,
    SC_CATCH_UP,
    SIM_DT,
    SPEED_CAP,
    TOW_BOOST,
    TRACTION,
)
from .strategy import Plan
from .track import Track

__all__ = ["Run", "Stop", "run_race"]

inf = math.inf
cnz = np.count_nonzero  # numpy call count is what costs here: the cheap tests come first


@dataclass
class Stop:
    """One pit stop as it happened: race distances of the pit entry, exit and box; when it stopped."""

    driver: int
    index: int
    lap: int
    entry: float  # race distances (m)
    exit: float
    box: float
    t_box: float = math.nan
    served: bool = False


@dataclass
class Run:
    """The simulation's record: every car every 10 Hz step, and what happened."""

    t: np.ndarray  # (steps,)
    s: np.ndarray  # (steps, drivers) race distance, m
    v: np.ndarray  # m/s
    lat: np.ndarray  # lateral offset, m (+ = inside)
    drs: np.ndarray  # Drs code
    fin_dist: np.ndarray  # race distance at which each car took the flag (inf: never)
    t_fin: np.ndarray
    t_out: np.ndarray  # time a retired car stopped (inf: never)
    stops: list[Stop]
    messages: list[RaceControlMessage]
    t_yellow: float
    t_sc: float
    t_sc_end: float
    t_end: float


class _State:
    """Everything the loop carries from one step to the next, and the step's own working values."""

    def __init__(self, track: Track, plan: Plan, laps: int) -> None:
        n = self.n = len(plan.drivers)
        self.track, self.plan, self.laps = track, plan, laps
        self.L, self.inv = track.L, 1.0 / track.ds
        self.ar = np.arange(n)
        # the cars
        self.s = -(POLE_BEHIND + GRID_SPACING * plan.grid).astype(np.float64)
        self.v = np.zeros(n)
        self.lat = np.where(plan.grid % 2 == 0, GRID_STAGGER, -GRID_STAGGER).astype(np.float64)
        self.drs_open = np.zeros(n, dtype=bool)
        self.prev_dtab = np.zeros(n, dtype=np.int8)
        self.finished = np.zeros(n, dtype=bool)
        self.fin_dist = np.full(n, inf)
        self.t_fin = np.full(n, inf)
        self.out = np.zeros(n, dtype=bool)
        self.t_out = np.full(n, inf)
        self.retiring = np.zeros(n, dtype=bool)
        # pit stops
        self.stop_i = np.zeros(n, dtype=np.int64)
        self.entered = np.zeros(n, dtype=bool)
        self.served = np.zeros(n, dtype=bool)
        self.hold_until = np.full(n, -inf)
        self.current: dict[int, Stop] = {}
        self.stops: list[Stop] = []
        # race control
        self.messages: list[RaceControlMessage] = []
        self.lights = GRID_TIME
        self.start_at = self.lights + plan.launch_delay
        self.sc = False
        self.t_yellow = self.t_sc = self.t_sc_end = inf
        self.sc_cross, self.n_sc, self.sc_in_msg = 0, plan.sc_laps, False
        self.incident = False
        self.drs_enabled, self.drs_after = False, 2
        self.lead_done = 0
        self.cheq = False
        self.t_end = inf
        self.max_time = self.lights + laps * track.t_ref * 3.0 + 900.0
        # the record
        self.rec_s: list[np.ndarray] = []
        self.rec_v: list[np.ndarray] = []
        self.rec_lat: list[np.ndarray] = []
        self.rec_drs: list[np.ndarray] = []
        self.step = 0
        # tables and cached per-car state for the loop
        self.vref, self.vsc = track.vref, track.vsc
        self.dvref = np.append(np.diff(self.vref), 0.0)
        self.dvsc = np.append(np.diff(self.vsc), 0.0)
        self.half_lap = 0.5 * self.L
        self.ones = np.ones(n)
        self.drs_off = np.zeros(n, dtype=np.int8)
        self.drs_code = self.drs_off
        self.dirty_state, self.out_any = True, False
        self.next_line = np.zeros(n)
        self.att_vs = np.full(n, -1)  # the car each car is attacking (-1: none)
        self.att_until = np.zeros(n)
        self.att_any = False
        self.no_attack = np.zeros(n, dtype=bool)

    def msg(self, t: float, text: str, category: str, driver: str | None = None) -> None:
        lap = min(self.lead_done + 1, self.laps)
        self.messages.append(RaceControlMessage(t=round(float(t), 3), message=text, category=category, lap=lap, driver=driver))


_DRS_OPEN, _DRS_ELIGIBLE, _DRS_OFF = np.int8(Drs.OPEN), np.int8(Drs.ELIGIBLE), np.int8(Drs.OFF)


def _where(st: _State) -> None:
    """Laps, pace factors and pit windows (cached: they change only at the line, in the pits, at the
    flag), then who is in the pit lane, visible, an obstacle."""
    s, L, ar = st.s, st.L, st.ar
    if st.dirty_state or cnz(s >= st.next_line):
        plan = st.plan
        lap_idx = np.clip(np.floor(s / L).astype(np.int64) + 1, 1, st.laps + 1)
        st.next_line = (lap_idx.astype(np.float64)) * L
        st.kk = plan.k[ar, lap_idx]
        cur = st.cur = plan.stop_laps[ar, st.stop_i]
        has = st.has = (cur > 0) & (~st.finished | st.entered) & ~st.out
        st.entry = np.where(has, cur * L - PIT_IN_BEFORE, inf)
        st.exit_ = cur * L + PIT_OUT_AFTER
        st.box = cur * L + plan.box_off
        st.dirty_state = False
    in_pit = st.in_pit = st.has & (s >= st.entry) & (s < st.exit_)
    st.pit_any = bool(cnz(in_pit))
    vis = st.vis = ~(st.out | in_pit)
    obst = st.obst = vis & ~(st.retiring | st.finished)
    st.pen = np.where(obst, 0.0, inf)


def _traffic(st: _State) -> None:
    """The car physically ahead on the circuit (obstacles only), the gap to it, and blue flags."""
    s, v, n, ar, pen = st.s, st.v, st.n, st.ar, st.pen
    D = s[None, :] - s[:, None]
    D %= st.L  # D[i, j]: metres from i forward to j
    D.flat[:: n + 1] = inf
    st.D = D
    Do = D + pen  # only obstacles count as "ahead"
    ahead = st.ahead = Do.argmin(axis=1)
    gap_m = st.gap_m = Do[ar, ahead]
    vsafe = np.maximum(v, 5.0)
    st.gap_t = gap_m / vsafe
    green = st.green = not st.sc
    s_ahead = s[ahead]
    lapping = st.lapping = s > s_ahead + st.half_lap if green else None  # the car ahead is being lapped by this one
    if green and cnz(lapping):
        Db = D + pen[:, None]
        behind = Db.argmin(axis=0)
        st.blue = st.obst & (s[behind] > s + st.half_lap) & (Db[behind, ar] < vsafe[behind])
    else:
        st.blue = None


def _look_ahead(st: _State) -> None:
    """The track tables where each car will be a step from now: reference speed, passing zone, DRS."""
    track = st.track
    look = st.look = st.s + st.v * SIM_DT
    sm = look % st.L
    u = sm * st.inv
    ti = st.ti = u.astype(np.int64)
    fr = st.fr = u - ti
    st.vr = st.vref[ti] + st.dvref[ti] * fr
    st.pz = track.passing[ti]
    st.dtab = track.drs_tab[ti]


def _pace(st: _State) -> None:
    """The target speed from the car's pace this lap: DRS opens on entering a zone within a second of
    the car ahead; tow on straights, dirty air in corners, a lift for blue flags."""
    n, obst, gap_t, dtab = st.n, st.obst, st.gap_t, st.dtab
    if st.drs_enabled:
        in_zone = dtab == 2
        close = obst & (gap_t < 1.0)
        drs_open = st.drs_open = in_zone & (st.drs_open | (close & (st.prev_dtab != 2)))
        st.drs_code = np.where(drs_open, _DRS_OPEN, np.where((dtab == 1) & close, _DRS_ELIGIBLE, _DRS_OFF))
        boost = 1.0 + DRS_BOOST * drs_open
    else:
        if st.drs_code is not st.drs_off:
            st.drs_open = np.zeros(n, dtype=bool)
            st.drs_code = st.drs_off
        boost = st.ones.copy()
    st.prev_dtab = dtab
    if st.green:
        pz, drs_open = st.pz, st.drs_open
        boost += TOW_BOOST * (obst & pz & ~drs_open & (gap_t < 1.0))
        boost -= DIRTY_AIR * (obst & ~pz & (gap_t < 0.7))  # dirty air in corners
        if st.blue is not None:
            boost -= 0.015 * st.blue
    k_eff = st.k_eff = st.kk * boost
    st.target = st.vr * k_eff


def _limits(st: _State, t: float) -> None:
    """Caps on the target: the safety car (the leader at SC pace, the rest catch up to the queue),
    the pit lane (brake to the limit before the entry, stop at the box), the cool-down lap."""
    n, v, target = st.n, st.v, st.target
    if st.sc:
        r = min(1.0, (t - st.t_sc) / 8.0)
        leader = int(np.where(st.out | st.finished, -inf, st.s).argmax())
        mult = np.full(n, SC_CATCH_UP)
        mult[leader] = 1.0
        ti, fr = st.ti, st.fr
        cap = (st.vsc[ti] + st.dvsc[ti] * fr) * mult
        target = np.minimum(target, target * (1.0 - r) + np.minimum(target, cap) * r)
    approach = st.approach = st.has & ~st.entered
    approach_any = st.approach_any = bool(cnz(approach))
    if approach_any:
        # at the limit a step before the line, so interpolated frames never show more
        d_in = np.maximum(np.where(approach, st.entry - st.look - v * SIM_DT - 1.0, 1e9), 0.0)
        np.minimum(target, np.sqrt(PIT_SPEED**2 + 24.0 * d_in), out=target)
    if st.pit_any:
        in_pit = st.in_pit
        target = np.where(in_pit, np.minimum(target, PIT_SPEED), target)
        unserved = in_pit & ~st.served
        target = np.where(unserved, np.minimum(target, np.sqrt(16.0 * np.maximum(st.box - st.s, 0.0))), target)
    if st.cheq and cnz(st.finished):  # cool-down lap
        target = np.where(st.finished, np.minimum(target, np.maximum(0.6 * st.vr, v - 4.0 * SIM_DT)), target)
    st.target = target


def _overtaking(st: _State, t: float) -> None:
    """A car faster this lap that gets within 12 m on a straight (tow, DRS) goes for the gap under
    braking; the defender backs off until it is through, or 4 s pass."""
    n, s, v, ar = st.n, st.s, st.v, st.ar
    attacking = st.no_attack
    if st.green and t > st.lights + 8.0:
        ahead, obst, kk = st.ahead, st.obst, st.kk
        close = st.gap_m < 12.0
        if cnz(close):
            new_att = close & obst & st.pz & (v > v[ahead] + 2.0) & (st.att_vs < 0) & ~st.lapping & (kk > kk[ahead] * 1.001)
            if cnz(new_att):
                st.att_vs = np.where(new_att, ahead, st.att_vs)
                st.att_until = np.where(new_att, t + 4.0, st.att_until)
                st.att_any = True
        if st.att_any:
            att_vs = st.att_vs
            attacking = att_vs >= 0
            vic = np.where(attacking, att_vs, ar)
            done = attacking & ((s > s[vic] + 3.0) | (t > st.att_until) | ~obst | ~obst[vic])
            att_vs = st.att_vs = np.where(done, -1, att_vs)
            attacking = attacking & ~done
            if cnz(attacking):
                ai = np.flatnonzero(attacking)
                defend = np.full(n, inf)
                np.minimum.at(defend, att_vs[ai], np.maximum(v[ai] - 3.0, 0.0))
                np.minimum(st.target, defend, out=st.target)
            else:
                st.att_any = False
    elif st.att_any:
        st.att_vs = np.full(n, -1)
        st.att_any = False
    st.attacking = attacking


def _speed(st: _State, t: float) -> None:
    """The speed reached: limited by the car's acceleration and braking; following cars close in at a
    comfortable deceleration, then hold the headway (on a green-flag straight a faster car may pass
    instead, and a lapping car always may); standing start, pit box, retirement. Then the distance."""
    v, k_eff, obst, gap_m = st.v, st.k_eff, st.obst, st.gap_m
    vk = np.maximum(v / k_eff, 1.0)
    a_up = k_eff * k_eff * (np.minimum(TRACTION * st.plan.launch_trac if t < st.lights + 6.0 else TRACTION, POWER / vk) - DRAG * vk * vk)
    np.maximum(a_up, 0.2, out=a_up)
    v_floor = v - (BRK0 + (DRAG + BRK_AERO) * v * v) * SIM_DT
    v_new = np.minimum(np.maximum(st.target, v_floor), v + a_up * SIM_DT)
    if st.green:
        apply = obst & ~st.pz & ~st.lapping & ~st.attacking & (gap_m < 400.0)
        d_min, b_close, tau = 5.0 + 0.2 * v, 12.0, 1.0
    else:
        apply = obst & (gap_m < 400.0)
        d_min, b_close, tau = 8.0 + 0.1 * v, 8.0, 2.0
    if cnz(apply):
        va = v_new[st.ahead]
        err = gap_m - d_min
        # too close: drop back, but never below 85% of the car ahead's speed (no cascades)
        cap_f = np.where(err > 0, np.sqrt(va * va + 2.0 * b_close * np.maximum(err, 0.0)), np.maximum(va + err / tau, 0.85 * va))
        v_new = np.where(apply, np.maximum(np.minimum(v_new, cap_f), v_floor), v_new)
    np.maximum(v_new, 0.0, out=v_new)
    np.minimum(v_new, SPEED_CAP, out=v_new)
    if t < st.lights + 2.0:
        v_new[t < st.start_at] = 0.0
    if st.pit_any:
        v_new[t < st.hold_until] = 0.0
    if st.out_any:
        v_new[st.out] = 0.0
    if cnz(st.retiring):
        v_new = np.where(st.retiring, np.maximum(v - 6.0 * SIM_DT, 0.0), v_new)
    st.v_new = v_new
    st.s_new = st.s + 0.5 * (v + v_new) * SIM_DT


def _pit_events(st: _State, t_new: float) -> None:
    """Cars entering the pit lane, stopping at their box (held for the stop time), leaving it."""
    if not (st.approach_any or st.pit_any):
        return
    has, entry, s_new, v_new = st.has, st.entry, st.s_new, st.v_new
    newly = has & ~st.entered & (s_new >= entry)
    for i in np.flatnonzero(newly):
        stop = Stop(int(i), int(st.stop_i[i]), int(st.cur[i]), float(entry[i]), float(st.exit_[i]), float(st.box[i]))
        st.current[int(i)] = stop
        st.stops.append(stop)
    st.entered |= newly
    if cnz(newly):
        st.dirty_state = True
    unserved = st.entered & ~st.served & has
    if cnz(unserved):
        box = st.box
        s_new = np.where(unserved, np.minimum(s_new, box), s_new)
        snap = unserved & (s_new >= box - 0.4)
        if cnz(snap):
            s_new = np.where(snap, box, s_new)
            v_new = np.where(snap, 0.0, v_new)
            st.served |= snap
            st.hold_until = np.where(snap, t_new + st.plan.stop_time[st.ar, st.stop_i], st.hold_until)
            for i in np.flatnonzero(snap):
                st.current[int(i)].t_box = t_new
                st.current[int(i)].served = True
    left = st.entered & (s_new >= st.exit_)
    if cnz(left):
        st.stop_i = st.stop_i + left
        st.entered &= ~left
        st.served &= ~left
        st.dirty_state = True
    st.s_new, st.v_new = s_new, v_new


def _lateral(st: _State, t: float) -> None:
    """Lateral position: side by side when close, lined up for the pit entry, off the track when retiring."""
    if t < st.lights:
        return
    vis, lat, ar = st.vis, st.lat, st.ar
    Dv = st.D + np.where(vis, 0.0, inf)
    av = Dv.argmin(axis=1)
    near = vis & (Dv[ar, av] < 8.5)
    lat_t = np.where(near, np.where(lat[av] > 0.3, -2.2, 2.2), 0.0)
    if st.approach_any or st.pit_any:
        lat_t[st.in_pit | (st.approach & (st.entry - st.s < 150.0))] = 0.0  # line up for the pit entry
    if cnz(st.retiring) or st.out_any:
        retiring, out = st.retiring, st.out
        lat_t[retiring | out] = RETIRE_OFFSET
        rate = np.where(retiring, 4.0, 2.5) * SIM_DT
        st.lat = np.where(out, lat, lat + np.minimum(np.maximum(lat_t - lat, -rate), rate))
    else:
        st.lat = lat + np.minimum(np.maximum(lat_t - lat, -0.25), 0.25)


def _race_control(st: _State, t_new: float) -> None:
    """The incident (a yellow where the retiring car or debris is), the retirement, the safety car."""
    plan, s_new, L = st.plan, st.s_new, st.L
    if not st.incident:
        who = plan.retire
        d = s_new[who] if who >= 0 else float(np.max(s_new))
        if d >= plan.incident_dist:
            st.incident = True
            st.t_yellow = t_new
            if who >= 0:
                st.retiring[who] = True
            sector = 1 + int(np.searchsorted(st.track.geometry.sectors, d % L, side="right"))
            st.msg(t_new, f"YELLOW IN TRACK SECTOR {sector}", "Flag")
    if cnz(st.retiring):
        stopped = st.retiring & (st.v_new <= 0.0)
        for i in np.flatnonzero(stopped):
            drv = plan.drivers[i]
            st.msg(t_new, f"CAR {drv.number} ({drv.code}) RETIRED", "CarEvent", drv.code)
        st.out |= stopped
        st.t_out = np.where(stopped, t_new, st.t_out)
        st.retiring &= ~stopped
        if cnz(stopped):
            st.out_any = st.dirty_state = True
    if st.sc and not st.sc_in_msg and t_new >= st.t_sc + 20.0:  # a one-lap safety car
        st.sc_in_msg = True
        st.msg(t_new, "SAFETY CAR IN THIS LAP", "SafetyCar")
    if st.incident and not st.sc and st.t_sc == inf and not st.cheq and t_new >= st.t_yellow + 10.0:
        st.sc, st.t_sc = True, t_new
        # the SC comes in as the leader completes its n_sc-th lap from now, before the last lap
        st.n_sc = max(1, min(plan.sc_laps, st.laps - 1 - st.lead_done))
        st.msg(t_new, "SAFETY CAR DEPLOYED", "SafetyCar")
        st.sc_in_msg = st.n_sc > 1
        if st.drs_enabled:
            st.drs_enabled = False
            st.msg(t_new, "DRS DISABLED", "Drs")


def _leader(st: _State, t: float) -> None:
    """The leader's completed laps: the safety car's laps, DRS enabled, the chequered flag (each car
    finishes at the line after the leader's), and the end of the race once every car is in."""
    s, s_new, L, laps = st.s, st.s_new, st.L, st.laps
    done_now = st.lead_done
    if not st.cheq and s_new.max() >= (st.lead_done + 1) * L:  # cheap test first; retired cars never lead
        alive = ~st.out
        lead = int(np.where(alive, s_new, -inf).argmax())
        done_now = int(math.floor(s_new[lead] / L)) if s_new[lead] >= 0 else 0
    if done_now > st.lead_done and not st.cheq:
        st.lead_done = done_now
        frac = (st.lead_done * L - s[lead]) / max(s_new[lead] - s[lead], 1e-9)
        t_c = float(t + min(max(frac, 0.0), 1.0) * SIM_DT)
        if st.lead_done >= laps:
            st.cheq = True
            st.msg(t_c, "CHEQUERED FLAG", "Flag")
            s_at = s + (s_new - s) * min(max(frac, 0.0), 1.0)
            st.fin_dist = np.where(alive, (np.floor(s_at / L) + 1.0) * L, inf)
            st.fin_dist[lead] = laps * L
            if st.sc:
                st.t_sc_end = inf  # the race finishes behind the safety car
        else:
            if st.sc:
                st.sc_cross += 1
                if st.sc_cross == st.n_sc - 1:
                    st.msg(t_c, "SAFETY CAR IN THIS LAP", "SafetyCar")
                elif st.sc_cross >= st.n_sc:
                    st.sc, st.t_sc_end = False, t_c
                    st.drs_after = st.lead_done + 1
                    st.msg(t_c, "TRACK CLEAR", "Flag")
            if not st.sc and not st.drs_enabled and st.lead_done >= st.drs_after:
                st.drs_enabled = True
                st.msg(t_c, "DRS ENABLED", "Drs")
    if st.cheq:
        newly = ~st.finished & ~st.out & (s_new >= st.fin_dist)
        if cnz(newly):
            frac = (st.fin_dist - s) / np.maximum(s_new - s, 1e-9)
            st.t_fin = np.where(newly, t + np.minimum(np.maximum(frac, 0.0), 1.0) * SIM_DT, st.t_fin)
            st.finished |= newly
            st.drs_open &= ~newly
            st.dirty_state = True
        if st.t_end == inf and np.all(st.finished | st.out):
            st.t_end = math.ceil((float(np.max(st.t_fin[st.finished])) + 4.0) / SIM_DT) * SIM_DT


def _step(st: _State, t: float) -> None:
    """One 10 Hz step: from the cars at ``t`` to the cars at ``t + SIM_DT`` (then in ``st.s``, ``st.v``)."""
    t_new = t + SIM_DT
    _where(st)
    _traffic(st)
    _look_ahead(st)
    _pace(st)
    _limits(st, t)
    _overtaking(st, t)
    _speed(st, t)
    _pit_events(st, t_new)
    _lateral(st, t)
    _race_control(st, t_new)
    _leader(st, t)
    st.s, st.v = st.s_new, st.v_new


def run_race(track: Track, plan: Plan, laps: int, progress: Callable[[float], None] | None) -> Run:
    """Simulate the race to 4 s after the last car took the flag; ``progress`` gets the fraction done (to 0.9)."""
    st = _State(track, plan, laps)
    st.msg(0.0, "GREEN LIGHT - PIT EXIT OPEN", "Flag")
    while True:
        t = st.step * SIM_DT
        st.rec_s.append(st.s)
        st.rec_v.append(st.v)
        st.rec_lat.append(st.lat)
        st.rec_drs.append(st.drs_code)
        if t >= st.t_end:
            break
        if t > st.max_time:  # pragma: no cover - a bug, not a race
            raise RuntimeError("simulation did not finish")
        _step(st, t)
        st.step += 1
        if progress is not None and st.step % 250 == 0:
            progress(min(0.9, 0.9 * max(0.0, float(np.max(st.s))) / (laps * st.L)))
    return Run(
        t=np.arange(len(st.rec_s)) * SIM_DT,
        s=np.array(st.rec_s),
        v=np.array(st.rec_v),
        lat=np.array(st.rec_lat),
        drs=np.array(st.rec_drs, dtype=np.int8),
        fin_dist=st.fin_dist,
        t_fin=st.t_fin,
        t_out=st.t_out,
        stops=st.stops,
        messages=st.messages,
        t_yellow=st.t_yellow,
        t_sc=st.t_sc,
        t_sc_end=st.t_sc_end,
        t_end=st.t_end,
    )
