""""Watch together" in a real browser: one page makes a room, a second opens its link, both follow one clock.

Same server, browser and page fixtures as tests/test_viewer.py (Debian's Chromium, a real
`racecast serve`); no console error allowed.
"""

from __future__ import annotations

import time
from typing import Callable

from playwright.sync_api import Page

from tests.test_viewer import Server, browser, console_errors, new_page, open_viewer, server, state, wait_state  # noqa: F401


def room_state(page: Page) -> dict:
    return page.evaluate("() => ({...window.racecast.state.room})")


def test_watch_together_makes_a_room_whose_link_follows_the_host(new_page: Callable[..., Page], server: Server) -> None:
    host = open_viewer(new_page, server)
    assert not host.locator("#room-badge").is_visible()
    host.click("#together")
    wait_state(host, "s.room.room && s.room.you_control === true && s.room.members === 1")
    link = host.input_value("#room-link")
    room = room_state(host)["room"]
    assert f"room={room}" in link and "replay=demo" in link and "token" not in link  # the token stays with the host
    assert host.locator("#room-panel").is_visible() and "you control" in host.inner_text("#room-badge")
    assert f"room={room}" in host.url  # a reload stays in the room

    guest = new_page()
    guest.goto(link)
    wait_state(guest, "s.loaded && s.room.members === 2 && s.room.you_control === false")
    assert "host controls" in guest.inner_text("#room-badge")
    wait_state(host, "s.room.members === 2")
    assert host.inner_text("#room-badge").startswith("2 watching")

    host.click("#play")
    wait_state(guest, "s.playing && s.frame > 25")
    # Both pages show nearly the same frame at the same moment (read back to back).
    spreads = []
    for _ in range(5):
        a, b = host.evaluate("() => window.racecast.state.frame"), guest.evaluate("() => window.racecast.state.frame")
        spreads.append(abs(a - b))
        time.sleep(0.2)
    assert sorted(spreads)[2] <= 12, spreads  # median within half a second of race (the viewers smooth)

    # The guest cannot steer the room: its click says who controls, and the room plays on.
    guest.click("#play")
    guest.wait_for_function("() => !document.querySelector('#toast').hidden && document.querySelector('#toast').textContent.includes('only the host')")
    assert state(guest)["playing"] is True
    f = state(host)["frame"]
    wait_state(host, f"s.playing && s.frame > {f + 10}")
    wait_state(guest, f"s.playing && s.frame > {f + 10}")


def test_a_bad_room_link_says_so(new_page: Callable[..., Page], server: Server) -> None:
    page = new_page()
    page.goto(f"{server.url}/?replay=demo&room=aaaaaaaaaa")
    page.wait_for_function("() => !document.querySelector('#error').hidden")
    assert "no room" in page.inner_text("#error-text")
