"""Frames as changes over the attach socket (issue 19): a console that asks for what changed
since its last pull rebuilds exactly the frame the engine built, however many builds it
skipped, through trends that fill and roll, qualities that go BAD, waveforms and a new
configuration; a value that holds costs nothing, and its age still grows; consoles pull in
step with the engine's builds, so one build serves them all."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from floorconsole.console import Frame, HistorianView, SignalView
from floorconsole.engine.attach import check_request, dumps
from floorconsole.engine.frame_delta import (
    DeltaError,
    DeltaReader,
    DeltaState,
    Tick,
    TickBuilder,
)
from floorconsole.engine.remote import next_pull_s

SPARK_POINTS = 120  # as the hub keeps


def signal(i: int, t_mono: float, **kw: Any) -> SignalView:
    base: dict[str, Any] = dict(
        id=f"asset{i // 10}.sig{i:02d}",
        asset=f"asset{i // 10}",
        kind="scalar",
        value=float(i),
        value_text=f"{float(i):.2f}",
        unit="bar",
        quality="GOOD",
        reason="",
        detail="",
        age_s=0.0,
        source=f"dev hr:{i} uint16",
        range=(0.0, 1000.0),
    )
    t = kw.pop("t", t_mono)  # the sample's time: the view says how old it is
    base.update(kw)
    return SignalView(**{**base, "age_s": round(max(0.0, t_mono - t), 3)})


def frame(t_mono: float, signals: tuple[SignalView, ...]) -> Frame:
    return Frame(
        t_wall=1.7e9 + t_mono,
        t_mono=t_mono,
        edge_id="bench",
        site="here",
        config_id="abc",
        control_mode="read-only",
        signals=signals,
        links=(),
        conditions=(),
        historian=HistorianView(1, 0, 0, "", 0, 4096),
        ingest_rate=25.0,
    )


class Plant:
    """Signals that change as a hub changes them: values with their sample times, trends
    that take a point now and then and keep the last SPARK_POINTS."""

    def __init__(self, n: int, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.t = 1000.0
        self.n = n
        self.unit = "bar"
        self.state = [
            {"value": float(i), "t": self.t, "quality": "GOOD", "spark": (), "wave": ()}
            for i in range(n)
        ]

    def step(self) -> Frame:
        self.t += self.rnd.choice((0.05, 0.1, 0.25, 0.6))
        for i, st in enumerate(self.state):
            roll = self.rnd.random()
            if roll < 0.3:
                st["value"], st["t"] = float(self.rnd.randint(0, 999)), self.t - 0.004
            if roll < 0.1:  # several trend points since the last build, rolling past the end
                points = tuple(float(self.rnd.randint(0, 9)) for _ in range(self.rnd.randint(1, 5)))
                st["spark"] = (st["spark"] + points)[-SPARK_POINTS:]
            elif roll < 0.2:
                st["spark"] = (st["spark"] + (st["value"],))[-SPARK_POINTS:]
            if roll > 0.97:
                st["quality"] = "BAD" if st["quality"] == "GOOD" else "GOOD"
            if i == 0 and roll < 0.5:
                st["wave"] = tuple(self.rnd.random() for _ in range(8))
        views = []
        for i, st in enumerate(self.state):
            bad = st["quality"] == "BAD"
            views.append(
                signal(
                    i,
                    self.t,
                    kind="waveform" if i == 0 else "scalar",
                    value=st["value"],
                    value_text=f"{st['value']:.2f}",
                    unit=self.unit,
                    quality=st["quality"],
                    reason="no communication" if bad else "",
                    detail="no fresh value for 2.0 s" if bad else "",
                    t=st["t"],
                    spark=st["spark"],
                    waveform=st["wave"],
                    malformed=1 if bad else 0,
                    labels=("off", "on") if i == 3 else (),
                )
            )
        return frame(self.t, tuple(views))


def pull(state: DeltaState, reader: DeltaReader, tick: Tick) -> tuple[Frame, int]:
    """One console's pull, through JSON as over the socket."""
    body = b'{"frame":%s,"session":null,"signals":%s}' % (tick.head(dumps), state.answer(tick))
    return reader.frame(json.loads(body)), len(body)


def same(got: Frame, want: Frame) -> None:
    assert replace(got, signals=()) == replace(want, signals=())
    assert len(got.signals) == len(want.signals)
    for g, w in zip(got.signals, want.signals, strict=True):
        # the age is worked out from the sample time, rounded to the millisecond both ways
        assert abs(g.age_s - w.age_s) <= 0.0011, (g.id, g.age_s, w.age_s)
        assert replace(g, age_s=0.0) == replace(w, age_s=0.0), g.id


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_consoles_rebuild_every_frame_whatever_builds_they_skip(seed: int) -> None:
    plant = Plant(40, seed)
    builder = TickBuilder()
    consoles = [(DeltaState(), DeltaReader(), p) for p in (1.0, 0.5, 0.15)]  # chance to pull
    pulls = 0
    for step in range(400):
        if step == 200:  # a new configuration: a unit changes, and so the fixed parts
            plant.unit = "kPa"
        want = plant.step()
        tick = builder.tick(want)
        for state, reader, chance in consoles:
            if plant.rnd.random() < chance:
                got, _ = pull(state, reader, tick)
                same(got, want)
                pulls += 1
    assert pulls > 400
    assert max(len(s["spark"]) for s in plant.state) == SPARK_POINTS  # trends rolled


def test_a_value_that_holds_costs_nothing_and_its_age_grows() -> None:
    sigs = tuple(signal(i, 100.0, t=99.5) for i in range(50))
    builder, state, reader = TickBuilder(), DeltaState(), DeltaReader()
    first, first_bytes = pull(state, reader, builder.tick(frame(100.0, sigs)))
    assert first.signals[7].age_s == 0.5
    later = tuple(signal(i, 102.0, t=99.5) for i in range(50))
    tick = builder.tick(frame(102.0, later))
    answer = json.loads(DeltaState.answer(state, tick))
    assert answer["rows"] == [] and answer["spark"] == [] and "static" not in answer
    got = reader.frame({"frame": json.loads(tick.head(dumps)), "session": None, "signals": answer})
    assert [s.age_s for s in got.signals] == [2.5] * 50  # grown, though nothing was sent
    assert len(tick.head(dumps)) + len(json.dumps(answer)) < first_bytes / 5


def test_a_value_that_goes_bad_is_in_the_next_answer() -> None:
    builder, state, reader = TickBuilder(), DeltaState(), DeltaReader()
    sigs = [signal(i, 10.0, t=9.9) for i in range(20)]
    pull(state, reader, builder.tick(frame(10.0, tuple(sigs))))
    sigs[5] = signal(5, 10.3, t=9.9, quality="BAD", reason="no communication")
    got, _ = pull(state, reader, builder.tick(frame(10.3, tuple(sigs))))
    assert got.signals[5].quality == "BAD" and got.signals[5].reason == "no communication"
    assert got.signals[5].age_s == 0.4


def test_answers_that_do_not_fit_are_refused() -> None:
    builder, state = TickBuilder(), DeltaState()
    tick = builder.tick(frame(5.0, tuple(signal(i, 5.0) for i in range(3))))
    head = json.loads(tick.head(dumps))
    good = json.loads(state.answer(tick))
    no_static = {k: v for k, v in good.items() if k != "static"}
    with pytest.raises(DeltaError, match="layout"):  # rows before the fixed parts
        DeltaReader().frame({"frame": head, "signals": no_static})
    short = {**good, "rows": [good["rows"][0][:5]]}
    with pytest.raises(DeltaError, match="expected 10 fields"):
        DeltaReader().frame({"frame": head, "signals": short})
    typed = {**good, "rows": [[0, "scalar", 1.0, 5, "GOOD", "", "", 1.0, 0, []]]}
    with pytest.raises(DeltaError, match="wrong type"):
        DeltaReader().frame({"frame": head, "signals": typed})
    missing = {**good, "rows": good["rows"][:2]}
    with pytest.raises(DeltaError, match="no row yet"):
        DeltaReader().frame({"frame": head, "signals": missing})
    assert DeltaReader().frame({"frame": head, "signals": good}).signals[2].id == "asset0.sig02"


def test_the_delta_argument_is_checked() -> None:
    assert check_request({"op": "frame", "args": {"delta": True}}) == ("frame", {"delta": True})
    with pytest.raises(Exception, match="delta must be true or false, got the number 1"):
        check_request({"op": "frame", "args": {"delta": 1}})


def test_consoles_fall_into_step_with_the_engines_builds() -> None:
    period = 0.25
    # Two consoles answered at 100.02 and 100.09 on the engine's clock (each with its own
    # offset to it) both pull next at its beat 100.25, so one build serves both.
    a = next_pull_s(started=5.0, received=5.03, engine_mono=100.02, period=period)
    b = next_pull_s(started=7.06, received=7.1, engine_mono=100.09, period=period)
    assert a - 5.03 == pytest.approx(0.23) and b - 7.1 == pytest.approx(0.16)
    # Never sooner than half a period: 100.2 waits for the beat after 100.25.
    assert next_pull_s(5.0, 5.0, 100.2, period) - 5.0 == pytest.approx(0.3)
    # A console at half the rate pulls on every other beat of the same clock.
    assert (next_pull_s(5.0, 5.0, 100.3, 0.5) - 5.0 + 100.3) % period == pytest.approx(0.0)
    # An engine that does not say keeps the console's own rhythm.
    for odd in (None, "x", float("nan"), float("inf")):
        assert next_pull_s(10.0, 10.2, odd, period) == 10.0 + period
    # In step, the refresh rate holds: one pull per period on average.
    t, mono, pulls = 0.0, 1234.567, 0
    while t < 100.0:
        nxt = next_pull_s(t, t + 0.004, mono + 0.004, period)
        mono += nxt - t
        t, pulls = nxt, pulls + 1
    assert 399 <= pulls <= 401
