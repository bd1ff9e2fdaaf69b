"""The hub: latest values, degraded re-emissions, staleness on the monotonic clock."""

from __future__ import annotations

from collections.abc import Sequence

from floorconsole.core.clock import FakeClock
from floorconsole.core.config import parse_plant
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, waveform
from floorconsole.engine.hub import Hub

PLANT = parse_plant("""
[edge]
id = "e1"
[[brokers]]
id = "b"
host = "127.0.0.1"
[[devices]]
id = "d1"
protocol = "modbus-tcp"
host = "127.0.0.1"
poll = "200ms"
timeout = "500ms"
[[signals]]
id = "m.current"
device = "d1"
address = "hr:0"
type = "float32"
range = [0, 50]
[[signals]]
id = "m.vib"
broker = "b"
topic = "t"
json = "x"
stale_after = "2s"
""")


class Store:
    def __init__(self) -> None:
        self.rows: list[Sample] = []
        self.changes: list[Sample] = []

    def append(self, samples: Sequence[Sample]) -> None:
        self.rows.extend(samples)

    def append_quality(self, sample: Sample) -> None:
        self.changes.append(sample)


def good(clock: FakeClock, sid: str, v: object) -> Sample:
    return Sample(sid, v, Quality.GOOD, Reason.NONE, clock.wall(), clock.mono())  # type: ignore[arg-type]


def test_every_signal_starts_uncertain_initial() -> None:
    hub = Hub(PLANT, FakeClock())
    assert {s.reason for s in hub.latest.values()} == {Reason.INITIAL}
    assert all(s.quality is Quality.UNCERTAIN and s.value is None for s in hub.latest.values())


def test_degraded_reemission_is_a_quality_change_not_a_row() -> None:
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)
    s = good(clock, "m.current", 12.5)
    hub.ingest([s])
    clock.advance(0.3)
    hub.ingest([s.degraded(Reason.LAST_USABLE, "timeout")])
    assert [r.value for r in store.rows] == [12.5]
    assert [(c.quality, c.reason) for c in store.changes] == [
        (Quality.GOOD, Reason.NONE),
        (Quality.UNCERTAIN, Reason.LAST_USABLE),
    ]
    latest = hub.latest["m.current"]
    assert latest.value == 12.5 and latest.quality is Quality.UNCERTAIN
    assert (
        abs(latest.age(clock.mono()) - 0.3) < 1e-9
    )  # the age of the value, not of the re-emission
    assert hub.samples_in == 1


def test_stale_turns_bad_on_monotonic_time_only() -> None:
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)
    hub.ingest([good(clock, "m.vib", waveform([0.1, -0.1]))])
    clock._wall += 3600  # a wall-clock step: nothing is stale
    assert hub.check_stale() == 0
    clock._mono += 2.5
    assert hub.check_stale() == 2  # m.vib past 2 s; m.current never had a value
    vib = hub.latest["m.vib"]
    assert vib.quality is Quality.BAD and vib.reason is Reason.NO_COMM
    assert "limit 2 s" in vib.detail
    assert vib.value is not None  # the last block stays visible, marked BAD
    assert hub.check_stale() == 0  # already BAD: no new change


def test_unknown_signal_is_counted_not_stored() -> None:
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)
    hub.ingest([good(clock, "nope", 1.0)])
    assert hub.unknown_signals == 1 and not store.rows


def test_trend_keeps_one_point_per_interval() -> None:
    clock = FakeClock()
    hub = Hub(PLANT, clock)
    for i in range(20):
        hub.ingest([good(clock, "m.current", float(i))])
        clock.advance(0.1)
    assert list(hub.spark["m.current"]) == [0.0, 5.0, 10.0, 15.0]


def test_failing_listener_does_not_stop_ingest() -> None:
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)
    seen: list[int] = []
    hub.add_listener(lambda batch: 1 / 0)
    hub.add_listener(lambda batch: seen.append(len(batch)))
    hub.ingest([good(clock, "m.current", 1.0)])
    assert seen == [1] and len(store.rows) == 1


def test_out_of_range_is_uncertain_and_recorded() -> None:
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)
    hub.ingest([good(clock, "m.current", 75.0)])
    s = hub.latest["m.current"]
    assert (s.quality, s.reason, s.value) == (Quality.UNCERTAIN, Reason.OUT_OF_RANGE, 75.0)
    assert s.detail == "75 outside 0–50"
    assert store.rows[-1].quality is Quality.UNCERTAIN
    clock.advance(0.1)
    hub.ingest([good(clock, "m.current", 12.0)])
    assert hub.latest["m.current"].quality is Quality.GOOD


def test_a_sample_timed_before_the_last_scan_is_still_flagged_on_time() -> None:
    """check_stale skips its scan until the earliest deadline it saw; a sample that starts a
    sooner deadline (back from BAD, or an older time than the last) must bring it forward."""
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)

    def vib_at(age: float, value: float) -> Sample:
        t = clock.mono() - age
        return Sample("m.vib", value, Quality.GOOD, Reason.NONE, clock.wall() - age, t, "")

    hub.ingest([good(clock, "m.vib", 1.0), good(clock, "m.current", 2.0)])
    clock._mono += 2.5
    hub.check_stale()
    assert hub.latest["m.vib"].quality is Quality.BAD
    # Back from BAD with a value measured 1.5 s ago (a late delivery): stale 0.5 s from now.
    hub.ingest([vib_at(1.5, 3.0)])
    clock._mono += 0.6
    assert hub.check_stale() == 1
    assert hub.latest["m.vib"].quality is Quality.BAD

    hub.ingest([vib_at(0.0, 4.0)])
    assert hub.check_stale() == 0  # scanned: the next deadline is 2 s out
    clock._mono += 0.5
    # GOOD to GOOD, but timed before the last value: its deadline is 1.5 s out, not 2.
    hub.ingest([vib_at(1.0, 5.0)])
    clock._mono += 1.1
    assert hub.check_stale() == 1
    assert "limit 2 s" in hub.latest["m.vib"].detail


def test_a_healthy_plant_is_not_scanned_every_check() -> None:
    """Between deadlines a check is one comparison: the scan of every signal runs when one
    can be due (1,500 signals ten times a second was half a microsecond a sample)."""
    clock, store = FakeClock(), Store()
    hub = Hub(PLANT, clock, store)
    hub.ingest([good(clock, "m.vib", 1.0), good(clock, "m.current", 2.0)])
    assert hub.check_stale() == 0
    scans = 0
    real = hub.stale_after

    class Counting(dict[str, float]):
        def items(self):  # type: ignore[override]
            nonlocal scans
            scans += 1
            return super().items()

    hub.stale_after = Counting(real)
    for _ in range(10):
        clock._mono += 0.1
        hub.ingest([good(clock, "m.vib", 1.0), good(clock, "m.current", 2.0)])
        assert hub.check_stale() == 0
    assert scans <= 1
    clock._mono += 2.1
    assert hub.check_stale() == 2
    assert scans >= 1
