"""Alarm state and latched trips across a restart of a real engine (kill -9 and SIGTERM): every
ISA-18.2 state comes back as it was, nothing re-annunciates, the latched output stays written
and is read back before anything is written, the journal reads consistently, and a condition
that cleared while the engine was down returns to normal saying so."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from floorconsole.adapters.modbus_server import ModbusDeviceServer

REPO = Path(__file__).resolve().parents[1]
# rule id -> the hr register its value is on
RULES = {
    "unack": 0,
    "acked": 1,
    "rtn": 2,
    "shelved": 3,
    "suppressed": 4,
    "oos": 5,
    "trip": 6,
    "gone": 7,  # its condition clears while the engine is down
}
TRIP_COIL = 10


def plant(tmp: Path, port: int) -> Path:
    lines = [
        f'[edge]\nid = "restart-test"\ndata_dir = "{tmp / "data"}"\n',
        "[control]\nenabled = true\n",
        f'[[devices]]\nid = "dev"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\n'
        f'port = {port}\npoll = "50ms"\ntimeout = "500ms"\n',
    ]
    for rid, reg in RULES.items():
        lines.append(
            f'[[signals]]\nid = "v.{rid}"\ndevice = "dev"\naddress = "hr:{reg}"\ntype = "uint16"\n'
        )
    for rid in RULES:
        actions = [f'{{ alarm = "high", message = "{rid} high" }}']
        latch = ""
        if rid == "trip":
            latch = "latch = true\n"
            actions.insert(
                0, f'{{ write = "dev", address = "co:{TRIP_COIL}", on = true, off = false }}'
            )
        lines.append(
            f'[[rules]]\nid = "{rid}"\nsignal = "v.{rid}"\nop = ">"\nthreshold = 50\n{latch}'
            f"actions = [{', '.join(actions)}]\n"
        )
    path = tmp / "plant.toml"
    path.write_text("\n".join(lines))
    return path


class Driver:
    """tests/support/alarm_driver.py in a subprocess."""

    def __init__(self, plant_file: Path, log: Path) -> None:
        self.stderr = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.alarm_driver", str(plant_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"driver ended: {self.proc.poll()}"
        return line

    def ask(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self._line())
        assert not (isinstance(answer, dict) and "error" in answer), answer
        return answer

    def alarms(self) -> dict[str, dict[str, Any]]:
        return {a["id"]: a for a in self.ask("state")["alarms"]}

    def rules(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.ask("state")["rules"]}

    def until(self, what: str, cond: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.ask("state")
            if cond(state):
                return state  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s; {state['alarms']}")
            time.sleep(0.1)

    def stop(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)
        self.proc.wait(15)
        self.stderr.close()


def states(state: dict[str, Any]) -> dict[str, str]:
    return {a["id"]: a["state"] for a in state["alarms"]}


def journal(db: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT alarm, from_state, to_state, text FROM alarm_journal ORDER BY seq"
        ).fetchall()
        events = [e for (e,) in conn.execute("SELECT event FROM engine_events ORDER BY seq")]
    finally:
        conn.close()
    return rows, events


# What must come back exactly (shelved_until is wall time: within a second).
KEPT = (
    "state",
    "priority",
    "activated",
    "acked",
    "acked_by",
    "shelved_by",
    "shelved_reason",
    "activations_total",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "coil_lost"),
    [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGKILL, True)],
    ids=["kill-9", "sigterm", "kill-9-device-forgot-the-trip"],
)
def test_alarms_and_a_latched_trip_survive_a_restart(
    modbus_server: ModbusDeviceServer, tmp_path: Path, how: int, coil_lost: bool
) -> None:
    """coil_lost: the device lost the trip coil while the engine was down (it restarted):
    the engine reads it back first, then writes the latched trip again."""
    modbus_server.set("hr", 0, [100] * len(RULES))
    plant_file = plant(tmp_path, modbus_server.port)
    d = Driver(plant_file, tmp_path / "driver.log")
    try:
        d.until(
            "every rule's alarm annunciated",
            lambda s: set(states(s).values()) == {"UNACK"} and len(s["alarms"]) == len(RULES),
        )
        assert modbus_server.get("co", TRIP_COIL) == [True]
        d.ask("ack", alarm="rule:acked")
        d.ask("ack", alarm="rule:trip")
        modbus_server.set("hr", RULES["rtn"], [0])
        d.until("rtn back to normal", lambda s: states(s)["rule:rtn"] == "RTN_UNACK")
        d.ask("shelve", alarm="rule:shelved", duration_s=3600, reason="sensor being swapped")
        d.ask("suppress", alarm="rule:suppressed")
        d.ask("oos", alarm="rule:oos")
        # The trip's condition clears: it stays latched (output on, alarm active).
        modbus_server.set("hr", RULES["trip"], [0])
        time.sleep(0.5)
        before = d.ask("state")
        assert states(before) == {
            "rule:unack": "UNACK",
            "rule:acked": "ACKED",
            "rule:rtn": "RTN_UNACK",
            "rule:shelved": "SHELVED",
            "rule:suppressed": "SUPPRESSED",
            "rule:oos": "OUT_OF_SERVICE",
            "rule:trip": "ACKED",
            "rule:gone": "UNACK",
        }
        trip = {r["id"]: r for r in before["rules"]}["trip"]
        assert trip["active"] and trip["state_word"] == "LATCHED", trip
        assert "reset" in trip["note"]
    finally:
        d.stop(how)
    rows_before, _ = journal(tmp_path / "data" / "alarms.db")
    # While the engine is down: one condition clears, the trip's stays clear.
    modbus_server.set("hr", RULES["gone"], [0])
    if coil_lost:
        modbus_server.set("co", TRIP_COIL, [False])
    co_writes, co_reads = modbus_server.writes["co"], modbus_server.requests["co"]

    d = Driver(plant_file, tmp_path / "driver.log")
    try:
        after = d.until(
            "the condition that cleared while down back to normal, the trip read back",
            lambda s: (
                states(s)["rule:gone"] == "RTN_UNACK"
                and "read back at start" in str(s["recent_actions"])
            ),
        )
        time.sleep(1.0)  # every rule has seen its input several times
        after = d.ask("state")
        old = {a["id"]: a for a in before["alarms"]}
        new = {a["id"]: a for a in after["alarms"]}
        for aid, a in old.items():
            if aid == "rule:gone":
                continue
            assert {k: new[aid][k] for k in KEPT} == {k: a[k] for k in KEPT}, aid
        assert abs(new["rule:shelved"]["shelved_until"] - old["rule:shelved"]["shelved_until"]) < 1
        gone = new["rule:gone"]
        assert gone["state"] == "RTN_UNACK" and "cleared while the engine was down" in gone["text"]
        assert gone["activated"] == old["rule:gone"]["activated"]
        # The latched trip: still on, its coil never written, read back before anything.
        trip = {r["id"]: r for r in after["rules"]}["trip"]
        assert trip["active"] and trip["state_word"] == "LATCHED", trip
        assert modbus_server.get("co", TRIP_COIL) == [True]
        assert modbus_server.requests["co"] > co_reads, "the trip's output was not read back"
        [write] = [a for a in trip["actions"] if a["kind"] == "write"]
        restored = [r for r in after["recent_actions"] if r["rule"] == "trip"]
        if coil_lost:  # read back false first, then written again (and read back true)
            assert modbus_server.writes["co"] == co_writes + 1
            assert [(r["transition"], r["ok"]) for r in restored] == [
                ("restore", False),
                ("activate", True),
            ], restored
            assert "written again" in restored[0]["text"]
        else:
            assert modbus_server.writes["co"] == co_writes, "a write went out at the restart"
            assert [r["transition"] for r in restored] == ["restore"], restored
            assert "as the rule left it" in write["last"]["text"], write
        assert write["last"]["ok"], write
    finally:
        d.stop(signal.SIGTERM)

    rows, events = journal(tmp_path / "data" / "alarms.db")
    # Each start is recorded; a stop only when it was clean (SIGTERM), not after a kill -9.
    first = ["engine started"] if how == signal.SIGKILL else ["engine started", "engine stopped"]
    assert events == [*first, "engine started", "engine stopped"], events
    new_rows = rows[len(rows_before) :]
    # Nothing re-annunciated; the only new transition is the one that cleared while down.
    assert [(a, f, t) for a, f, t, _ in new_rows] == [("rule:gone", "UNACK", "RTN_UNACK")]
    # The journal never contradicts itself: each transition starts where the last one ended.
    last: dict[str, str] = defaultdict(lambda: "NORMAL")
    for alarm, frm, to, text in rows:
        assert frm == last[alarm], (alarm, frm, to, text)
        last[alarm] = to
