"""The race model refuses inconsistent data with errors that name the culprit."""

import dataclasses

import numpy as np
import pytest

from racecast.race import ROW_BLOCK, Compound, Race, RaceError, Status, empty_channels, rank_positions
from tests.factories import tiny_race


def rebuild(race: Race, **changes) -> Race:
    fields = {f.name: getattr(race, f.name) for f in dataclasses.fields(race)}
    fields.update(changes)
    return Race(**fields)


def with_channel(race: Race, name: str, fn) -> Race:
    ch = {k: np.array(v) for k, v in race.channels.items()}
    fn(ch[name])
    return rebuild(race, channels=ch)


def test_valid_race_builds_and_is_read_only():
    r = tiny_race()
    assert r.n_frames == 250 and r.n_drivers == 3
    with pytest.raises(ValueError):
        r["x"][0, 0] = 1.0


def test_shape_mismatch_names_channel():
    r = tiny_race()
    ch = dict(r.channels)
    ch["speed"] = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(RaceError, match="'speed' has shape"):
        rebuild(r, channels=ch)


def test_time_must_strictly_increase():
    r = tiny_race()
    t = np.array(r.t)
    t[100] = t[99]
    with pytest.raises(RaceError, match="strictly increasing: frame 100"):
        rebuild(r, t=t)


def test_non_finite_position_names_frame_and_driver():
    def poison(a):
        a[42, 1] = np.nan

    with pytest.raises(RaceError, match=r"'x' is not finite at frame 42, driver D01"):
        with_channel(tiny_race(), "x", poison)


def test_positions_must_be_a_permutation():
    def dup(a):
        a[7, :] = 1

    with pytest.raises(RaceError, match="positions at frame 7 are not a permutation"):
        with_channel(tiny_race(), "position", dup)


def test_retired_car_cannot_lead_running_cars():
    r = tiny_race(retire=True)
    ch = {k: np.array(v) for k, v in r.channels.items()}
    last = r.n_frames - 1
    ch["position"][last] = [1, 2, 3]  # D00 is OUT at the end, so P1 is impossible
    with pytest.raises(RaceError, match=f"frame {last}: driver D0[12] is running in P3 behind a retired car"):
        rebuild(r, channels=ch)


def test_missing_channel_and_duplicate_codes():
    r = tiny_race()
    ch = dict(r.channels)
    del ch["gap"]
    with pytest.raises(RaceError, match=r"missing channels: \['gap'\]"):
        rebuild(r, channels=ch)
    d = r.drivers
    with pytest.raises(RaceError, match="unique"):
        rebuild(r, drivers=(d[0], d[0], d[2]))


def test_rank_positions_puts_retired_cars_last():
    prog = np.array([[3.0, 2.0, 1.0]])
    status = np.array([[Status.OUT, Status.RUNNING, Status.RUNNING]])
    assert rank_positions(prog, status).tolist() == [[3, 1, 2]]


def test_lookups():
    r = tiny_race()
    assert r.frame_at(1.0) == 25
    assert r.frame_at(-5) == 0 and r.frame_at(1e9) == r.n_frames - 1
    assert Compound.parse("INTER") == Compound.INTERMEDIATE and Compound.parse(None) == Compound.UNKNOWN


def test_rank_positions_across_frame_blocks_matches_a_whole_race_sort():
    """Ranking works a block of frames at a time (bounded memory): the result is the same as one
    sort over the whole race, also where a block boundary falls, and ties keep driver order."""
    rng = np.random.default_rng(0)
    n, nd = ROW_BLOCK * 2 + 37, 6
    prog = rng.integers(0, 4, size=(n, nd)).astype(np.float64)  # many ties
    status = rng.choice([Status.RUNNING, Status.OUT, Status.DNS], size=(n, nd), p=[0.8, 0.15, 0.05]).astype(np.int8)
    key = np.where(status == Status.OUT, prog - 1e6, prog)
    key = np.where(status == Status.DNS, -2e6, key)
    want = np.argsort(np.argsort(-key, axis=1, kind="stable"), axis=1, kind="stable") + 1
    assert rank_positions(prog, status).tolist() == want.tolist()


def test_bad_order_is_named_at_its_frame_in_a_later_block():
    """The order checks run a block of frames at a time and still name the right frame."""
    n = ROW_BLOCK + 10
    r = tiny_race(n_frames=n)
    bad = n - 3
    with pytest.raises(RaceError, match=f"positions at frame {bad} are not a permutation"):
        with_channel(r, "position", lambda a: a.__setitem__((bad, 0), a[bad, 1]))


def test_channels_are_allocated_on_first_use_and_completed_by_the_race():
    ch = empty_channels(4, 2)
    assert len(ch) == 0  # nothing allocated yet
    assert np.isnan(ch["gap"]).all() and ch["gap"].dtype == np.float32  # nullable: NaN
    assert (ch["x"] == 0).all() and list(ch) == ["gap", "x"]
    with pytest.raises(KeyError):
        ch["no_such_channel"]
    full = tiny_race()
    given = {k: np.array(v) for k, v in full.channels.items() if k not in ("sector1", "lap_time")}
    lazy = empty_channels(full.n_frames, full.n_drivers)
    lazy.update(given)
    r = rebuild(full, channels=lazy)  # the two untouched channels are allocated by the race
    assert set(r.channels) == set(full.channels)
    assert np.isnan(r["sector1"]).all() and np.isnan(r["lap_time"]).all()
