"""One error model: every exception racecast defines is a RacecastError (status, close code, kind).

An exception outside the tree would need its own except-and-map somewhere, which is how
four separate exception-to-status mappings grew before. The only exception allowed
outside is an internal signal that never reaches a client or an operator.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import racecast
from racecast.errors import BadRequest, Damaged, NotFound, RacecastError, Unavailable

#: Internal control flow, caught where it is raised; never shown to anyone.
INTERNAL = {"racecast.server.sink.SinkClosed"}


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(racecast.__path__, "racecast."):
        try:
            mod = importlib.import_module(info.name)
        except ImportError as e:  # an optional extra (e.g. redis) not installed
            pytest.fail(f"{info.name} does not import: {e}")
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_racecast_exception_is_a_racecast_error() -> None:
    classes = _exception_classes()
    assert len(classes) > 20  # the walk found the tree, not nothing
    outside = sorted(n for n, c in classes.items() if not issubclass(c, RacecastError) and n not in INTERNAL)
    assert outside == [], f"exceptions outside the error model: {outside}"
    assert INTERNAL <= set(classes), "an allowed internal exception is gone: update INTERNAL"


@pytest.mark.parametrize(
    "path, base, status",
    [
        ("racecast.race.RaceError", Damaged, 500),
        ("racecast.bundle.varint.DecodeError", Damaged, 500),
        ("racecast.analysis.store.AnalysisError", Damaged, 500),
        ("racecast.analysis.compare.CompareError", NotFound, 404),
        ("racecast.analysis.charts.ChartError", BadRequest, 400),
        ("racecast.analysis.plot.PlotUnavailable", Unavailable, 501),
    ],
)
def test_errors_keep_their_builtin_base_and_get_a_status(path: str, base: type, status: int) -> None:
    mod, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(mod), name)
    e = cls("what went wrong")
    assert isinstance(e, base) and e.http_status == status and str(e) == "what went wrong"
    assert e.to_dict() == {"detail": "what went wrong", "error": base.kind}
