"""The streaming server: REST API, metrics and WebSocket playback on one shared clock."""

from .app import app_from_env, create_app

__all__ = ["create_app", "app_from_env"]
