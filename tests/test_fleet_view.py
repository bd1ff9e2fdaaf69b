"""The fleet view's rows and detail from the messages edges publish (the real parser, no
broker: what the tool does with what it hears): a held and a deferred remote change, a
decommissioned edge, an offline edge's since (a last will carries when it connected, not when
it went: its heartbeat says), and the view at 80x24 (Enter opens one detail, not a stack)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from floorconsole.core.fleet import FleetState, detail_text, row_line, topic
from floorconsole.ui.fleet import EdgeDetail, FleetApp, fleet_frame

P = "floorconsole/fleet"


def status(edge: str, state: str, t: float, **more: Any) -> bytes:
    doc = {"edge": edge, "state": state, "t": t, "site": "hall1", "boot": t - 50, "every": 5}
    if state == "online":
        doc["snapshot"] = "a" * 40
    return json.dumps({**doc, **more}).encode()


def pending(deferred_by: str = "") -> dict[str, Any]:
    return {
        "rollout": "81fe2005ae6b-20261204T010703",
        "action": "apply",
        "snapshot": "4c5805a3bf7f" + "0" * 28,
        "by": "eng1",
        "t": time.time() - 30,
        "bundle": "81fe2005ae6b" + "0" * 28,
        "deferred_by": deferred_by,
        "deferred_why": "batch running" if deferred_by else "",
    }


def fleet(now: float) -> FleetState:
    st = FleetState(P)
    st.apply(topic(P, "edge-a", "status"), status("edge-a", "online", now))
    st.apply(topic(P, "edge-h", "status"), status("edge-h", "online", now, pending=pending()))
    st.apply(topic(P, "edge-f", "status"), status("edge-f", "online", now, pending=pending("eng2")))
    # went without a goodbye: its will says when it connected (an hour ago); it was last
    # heard two minutes ago; its goodbye names no snapshot, its activation log does
    st.apply(topic(P, "edge-w", "status"), status("edge-w", "offline", now - 3600, will=True))
    st.apply(topic(P, "edge-w", "alive"), json.dumps({"t": now - 120}).encode())
    acts = {
        "activations": [
            {
                "seq": 1,
                "snapshot": "c" * 40,
                "at": now - 3600,
                "outcome": "applied",
                "by": "fleet:eng1",
                "note": "fleet rollout 81fe2005ae6b-20261204T010703 (bundle 81fe2005ae6b)",
            }
        ]
    }
    st.apply(topic(P, "edge-w", "activations"), json.dumps(acts).encode())
    st.apply(
        topic(P, "edge-x", "status"),
        status("edge-x", "offline", now - 60, decommissioned={"by": "ops", "why": "scrapped"}),
    )
    assert st.bad_messages == 0, st.last_problem
    return st


def test_rows_say_held_deferred_decommissioned_and_offline_since() -> None:
    now = time.time()
    st = fleet(now)
    lines = {r.edge: row_line(r, now) for r in st.rows()}
    assert lines["edge-a"].split()[2] == "online"
    assert lines["edge-h"].split()[2] == "HELD"
    assert lines["edge-f"].split()[2] == "DEFER"
    assert lines["edge-x"].split()[2] == "DECOM"
    # offline for two minutes (its heartbeat), not an hour (its will's time); its last snapshot
    assert lines["edge-w"].split()[2:5] == ["OFFLINE", "2m", "c" * 12], lines["edge-w"]
    assert all(len(x) <= 78 for x in lines.values()), lines

    summary, _ = fleet_frame(st, now)
    assert "2 held" in summary and "1 decommissioned" in summary, summary
    assert len(summary) <= 80, summary

    held = detail_text(st, "edge-h", now)
    assert "held      rollout 81fe2005ae6b-20261204T010703 (bundle 81fe2005ae6b)" in held
    assert "waits for an engineer there" in held
    assert "deferred by eng2: batch running" in detail_text(st, "edge-f", now)
    gone = detail_text(st, "edge-w", now)
    assert "offline   since " in gone and "(2m ago): its last will" in gone, gone
    assert f"snapshot  {'c' * 12}  (the last its log says ran)" in gone, gone
    assert "fleet rollout 81fe2005ae6b-20261204T010703" in gone, gone  # the note, not cut
    for edge in ("edge-a", "edge-h", "edge-f", "edge-w", "edge-x"):
        assert all(len(x) <= 80 for x in detail_text(st, edge, now).splitlines()), edge


async def test_the_view_at_80x24_opens_one_detail_and_goes_back() -> None:
    app = FleetApp(fleet(time.time()), threading.Lock())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "2 held" in str(app.query_one("#summary").render())
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, EdgeDetail) and app.screen.edge == "edge-f"
        depth = len(app.screen_stack)
        await pilot.press("enter")  # nothing on a detail (it pushed a second one before)
        await pilot.pause()
        assert len(app.screen_stack) == depth
        assert "deferred by eng2" in str(app.screen.query_one("#detail").render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, EdgeDetail)
