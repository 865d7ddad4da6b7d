"""HTTP caching shared by the routes: conditional requests against strong ETags."""

from __future__ import annotations

__all__ = ["etag_matches"]


def etag_matches(header: str | None, *etags: str) -> bool:
    """Whether an ``If-None-Match`` header matches any of ``etags`` (weak comparison, RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = {e.strip().removeprefix("W/") for e in header.split(",")}
    return any(e in wanted for e in etags)
