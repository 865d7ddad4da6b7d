"""The streaming server: REST API, metrics and WebSocket playback on one shared clock.

``create_app`` and ``app_from_env`` are imported on first use, so that the sans-I/O
parts of this package (:mod:`~racecast.server.engine`, :mod:`~racecast.server.sink`)
import without the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "app_from_env"]

if TYPE_CHECKING:
    from .app import app_from_env, create_app


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
