"""Sparkplug B session rules (core/sparkplug.py), each against the specification's words."""

from __future__ import annotations

import pytest

from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.adapters.sparkplug.codec import decode, encode
from floorconsole.core.quality import Quality
from floorconsole.core.sparkplug import (
    BDSEQ,
    REBIRTH,
    AliasTable,
    DataType,
    MessageType,
    Metric,
    ReportByException,
    SeqCounter,
    Topic,
    check_level,
    death_metrics,
    device_topic,
    next_bdseq,
    node_birth_metrics,
    node_topic,
    parse_state,
    parse_topic,
    rebirth_requested,
    state_payload,
    state_topic,
)


def test_data_types_are_the_specifications() -> None:
    for t in DataType:
        assert spb.DataType.Value(t.name) == t.value, t


def test_topic_namespace() -> None:
    assert node_topic("plant3", MessageType.NBIRTH, "line2") == "spBv1.0/plant3/NBIRTH/line2"
    assert (
        device_topic("plant3", MessageType.DDATA, "line2", "drive1")
        == "spBv1.0/plant3/DDATA/line2/drive1"
    )
    assert state_topic("scada") == "spBv1.0/STATE/scada"
    assert parse_topic("spBv1.0/plant3/DCMD/line2/drive1") == Topic(
        "plant3", MessageType.DCMD, "line2", "drive1"
    )
    assert parse_topic("spBv1.0/plant3/NCMD/line2") == Topic("plant3", MessageType.NCMD, "line2")
    for bad in (
        "spBv1.0/STATE/scada",
        "spBv1.0/plant3/NCMD/line2/drive1",  # a node message with a device level
        "spBv1.0/plant3/DDATA/line2",  # a device message without one
        "spAv1.0/plant3/NDATA/line2",
        "spBv1.0/plant3/XDATA/line2",
    ):
        assert parse_topic(bad) is None, bad
    assert check_level("group", "plant3") == "plant3"
    with pytest.raises(ValueError, match="cannot be empty or hold"):
        check_level("edge", "line/2")


def test_bdseq_and_seq_wrap_at_256() -> None:
    assert next_bdseq(None) == 0 and next_bdseq(7) == 8 and next_bdseq(255) == 0
    seq = SeqCounter()
    got = [seq.next() for _ in range(258)]
    assert got[:3] == [0, 1, 2] and got[255] == 255 and got[256:] == [0, 1]
    seq.reset()
    assert seq.next() == 0


def test_state_3_0_json_and_everything_else_offline() -> None:
    assert parse_state(state_payload(True, 1_790_000_000_000)).online
    assert parse_state(b'{"online": false, "timestamp": 5}').timestamp_ms == 5
    for old_or_bad in (b"ONLINE", b"OFFLINE", b"", b"[1]", b'{"online": "true"}', b"\xff"):
        assert parse_state(old_or_bad).online is False


def test_birth_death_and_rebirth_request() -> None:
    now = 1_790_000_000_000
    birth = node_birth_metrics(
        42, now, [Metric("edge/snapshot", 1, now, DataType.String, "7f3a21")]
    )
    assert [m.name for m in birth] == [BDSEQ, REBIRTH, "edge/snapshot"]
    assert birth[0].value == death_metrics(42, now)[0].value == 42
    seq, _ts, back = decode(encode(birth, seq=0, timestamp_ms=now))
    assert seq == 0 and back[0].datatype == DataType.Int64 and back[1].value is False
    aliases = AliasTable()
    assert aliases.add(REBIRTH) == 1 and aliases.add("a") == 2 and aliases.add(REBIRTH) == 1
    assert rebirth_requested([Metric(REBIRTH, None, now, DataType.Boolean, True)], aliases)
    assert rebirth_requested([Metric(None, 1, now, DataType.Boolean, True)], aliases)
    assert not rebirth_requested([Metric(None, 2, now, DataType.Boolean, True)], aliases)
    assert not rebirth_requested([Metric(REBIRTH, None, now, DataType.Boolean, False)], aliases)


def test_report_by_exception_sends_a_quality_change_of_a_steady_value() -> None:
    rbe = ReportByException()
    assert rbe.changed("m", 1.0, Quality.GOOD, "")
    assert not rbe.changed("m", 1.0, Quality.GOOD, "")
    assert rbe.changed("m", 1.0, Quality.BAD, "no communication")
    assert rbe.changed("m", 2.0, Quality.BAD, "no communication")
    rbe.reset()
    assert rbe.changed("m", 2.0, Quality.BAD, "no communication")


def test_units_travel_as_a_property() -> None:
    m = Metric("motor1/current", 3, 1, DataType.Float, 12.5, unit="A")
    (back,) = decode(encode([m], seq=1, timestamp_ms=1))[2]
    assert back.unit == "A" and back.value == 12.5
