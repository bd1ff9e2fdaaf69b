"""core.payload: MQTT payload bytes to values, every failure a counted reason, never an exception."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorconsole.core import payload as payload_module
from floorconsole.core.config import MqttPoint, SignalConfig, parse_json_path
from floorconsole.core.payload import (
    BAD_TIME,
    MALFORMED_REASONS,
    Extracted,
    Malformed,
    Payload,
    TopicDecoder,
    extract,
    format_path,
)
from floorconsole.core.quality import Quality, Reason

TOPIC = "factory/motor-01/vibration/raw"


def point(
    path: str = "", *, ts: str | None = None, kind: str | None = None, max_payload: int = 256 * 1024
) -> MqttPoint:
    return MqttPoint(
        broker="local",
        topic=TOPIC,
        json_path=parse_json_path(path) if path else (),
        time_path=parse_json_path(ts) if ts else None,
        kind=kind,
        max_payload=max_payload,
    )


def value_of(raw: bytes, p: MqttPoint) -> object:
    result = extract(raw, p)
    assert isinstance(result, Extracted), result
    return result.value


def reason_of(raw: bytes, p: MqttPoint) -> str:
    result = extract(raw, p)
    assert isinstance(result, Malformed), result
    return result.reason


# --- paths -------------------------------------------------------------------------------------


def test_nested_keys_and_array_indices() -> None:
    raw = b'{"data": {"axes": [{"rms": 0.5}, {"rms": 1.25}]}, "temp": 61.2}'
    assert value_of(raw, point("data.axes[1].rms")) == 1.25
    assert value_of(raw, point("data.axes[0].rms")) == 0.5
    assert value_of(raw, point("temp")) == 61.2


def test_empty_path_reads_the_payload_itself() -> None:
    assert value_of(b"21.5", point()) == 21.5
    assert value_of(b"7", point()) == 7.0
    assert isinstance(value_of(b"7", point()), float)


@pytest.mark.parametrize(
    ("raw", "path", "detail"),
    [
        (b'{"a": 1}', "b", "no key 'b' in $"),
        (b'{"a": {"b": 1}}', "a.c", "no key 'c' in $.a"),
        (b'{"a": [1, 2]}', "a[2]", "$.a[2]: index past the end (length 2)"),
        (b'{"a": 1}', "a.b", "$.a is a number, not an object (for key 'b')"),
        (b'{"a": {"b": 1}}', "a[0]", "$.a is an object, not an array (for [0])"),
        (b"[1, 2]", "a", "$ is an array, not an object (for key 'a')"),
    ],
)
def test_missing_key_names_where_the_path_stopped(raw: bytes, path: str, detail: str) -> None:
    assert extract(raw, point(path)) == Malformed("missing_key", detail)


def test_format_path() -> None:
    assert format_path(("axes", 0, "rms")) == "$.axes[0].rms"
    assert format_path(()) == "$"


# --- types -------------------------------------------------------------------------------------


def test_booleans_stay_booleans() -> None:
    assert value_of(b'{"run": true}', point("run")) is True
    assert value_of(b'{"run": false}', point("run")) is False


def test_array_of_numbers_is_a_read_only_waveform() -> None:
    wave = value_of(b'{"x": [1, 2.5, -3e-3]}', point("x"))
    assert isinstance(wave, np.ndarray)
    assert wave.dtype == np.float64
    np.testing.assert_array_equal(wave, [1.0, 2.5, -0.003])
    with pytest.raises(ValueError):
        wave[0] = 9.0


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"v": "12.5"}', "$.v is a string, not a number, boolean or array of numbers"),
        (b'{"v": null}', "$.v is null, not a number, boolean or array of numbers"),
        (b'{"v": {"w": 1}}', "$.v is an object, not a number, boolean or array of numbers"),
        (b'{"v": []}', "$.v is an empty array"),
        (b'{"v": [1, "2"]}', "$.v[1] is a string, not a number"),
        (b'{"v": [1, true]}', "$.v[1] is a boolean, not a number"),
        (b'{"v": [1, null]}', "$.v[1] is null, not a number"),
        (b'{"v": [[1, 2], [3, 4]]}', "$.v[0] is an array, not a number"),
    ],
)
def test_wrong_type(raw: bytes, detail: str) -> None:
    assert extract(raw, point("v")) == Malformed("wrong_type", detail)


def test_kind_mismatch_is_wrong_type_both_ways() -> None:
    assert extract(b'{"v": [1, 2]}', point("v", kind="scalar")) == Malformed(
        "wrong_type", "$.v is a waveform, the signal is a scalar"
    )
    assert extract(b'{"v": 3}', point("v", kind="waveform")) == Malformed(
        "wrong_type", "$.v is a scalar, the signal is a waveform"
    )
    assert value_of(b'{"v": true}', point("v", kind="scalar")) is True
    # The kind the adapter learned overrides an open point.kind.
    assert isinstance(extract(b'{"v": 3}', point("v"), kind="waveform"), Malformed)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v": NaN}',
        b'{"v": Infinity}',
        b'{"v": -Infinity}',
        b'{"v": 1e999}',
        b'{"v": [0.1, 0.2, NaN]}',
        b'{"v": [Infinity]}',
        b'{"v": [1, -1e400]}',
        b'{"v": [1, ' + str(10**400).encode() + b"]}",
    ],
)
def test_not_finite_anywhere(raw: bytes) -> None:
    assert reason_of(raw, point("v")) == "not_finite"


def test_not_finite_detail_points_at_the_element() -> None:
    assert extract(b'{"v": [0.1, 0.2, NaN]}', point("v")) == Malformed(
        "not_finite", "$.v[2] is nan"
    )


# --- bytes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"hello",
        b'{"v": 1,}',
        b"\xff\xfe{}",
        b'{"v": 1}\x00garbage',
        '{"v": 1}'.encode("utf-16"),  # Python's json.loads(bytes) would accept this; we want UTF-8
        b'{"v": "\xe9"}',  # latin-1 e-acute: not UTF-8
        b"[" * 200_000,
    ],
)
def test_not_json(raw: bytes) -> None:
    assert reason_of(raw, point("v")) == "not_json"


def test_utf8_text_inside_payload_is_fine() -> None:
    assert value_of('{"name": "Moteur é", "v": 4}'.encode(), point("v")) == 4.0


def test_size_is_checked_before_parsing() -> None:
    p = point("v", max_payload=16)
    assert extract(b'{"v": 1}', p) == Extracted(1.0)
    assert extract(b"not json at all, and long", p) == Malformed(
        "oversized", "25 bytes, more than max_payload 16"
    )
    assert reason_of(b'{"v": 123456789012}', p) == "oversized"  # 19 bytes, valid JSON


def test_oversized_does_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(raw: bytes) -> object:
        raise AssertionError("parsed an oversized payload")

    monkeypatch.setattr(payload_module, "parse_json", boom)
    assert reason_of(b"x" * 100, point("v", max_payload=10)) == "oversized"


# --- source time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.25", 1_700_000_000.25),
        ("1700000000123", 1_700_000_000.123),  # milliseconds
        ('"2023-11-14T22:13:20Z"', 1_700_000_000.0),
        ('"2023-11-14T23:13:20+01:00"', 1_700_000_000.0),
        ('"2023-11-14T22:13:20"', 1_700_000_000.0),  # no offset: UTC
    ],
)
def test_source_time(ts: str, expected: float) -> None:
    result = extract(f'{{"v": 1, "ts": {ts}}}'.encode(), point("v", ts="ts"))
    assert isinstance(result, Extracted)
    assert result.t_source == pytest.approx(expected)
    assert result.time_problem == ""


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"v": 1}', "no key 'ts' in $"),
        ('{"v": 1, "ts": "yesterday"}', "$.ts is 'yesterday', not ISO 8601 or epoch seconds"),
        ('{"v": 1, "ts": -5}', "$.ts is -5, not a time"),
        ('{"v": 1, "ts": NaN}', "$.ts is nan, not a time"),
        ('{"v": 1, "ts": true}', "$.ts is a boolean, not a time"),
        ('{"v": 1, "ts": null}', "$.ts is null, not a time"),
    ],
)
def test_bad_time_keeps_the_value_and_says_why(body: str, problem: str) -> None:
    assert extract(body.encode(), point("v", ts="ts")) == Extracted(1.0, None, problem)


def test_no_time_path_means_no_source_time() -> None:
    assert extract(b'{"v": 1, "ts": 1700000000}', point("v")) == Extracted(1.0)


# --- one parse per message, many signals -------------------------------------------------------


def signals(*specs: tuple[str, str, str | None]) -> list[SignalConfig]:
    return [
        SignalConfig(id=sid, source=point(path, ts="ts", kind=kind)) for sid, path, kind in specs
    ]


def test_payload_parses_once_for_all_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = payload_module.parse_json

    def counting(raw: bytes) -> object:
        calls.append(raw)
        return real(raw)

    monkeypatch.setattr(payload_module, "parse_json", counting)
    decoder = TopicDecoder(
        TOPIC,
        signals(
            ("m.x", "x", "waveform"),
            ("m.y", "y", "waveform"),
            ("m.z", "z", "waveform"),
            ("m.id", "motor_id", None),
        ),
    )
    raw = json.dumps(
        {"motor_id": 1, "ts": 1_700_000_000, "x": [0.1] * 256, "y": [0.2] * 256, "z": [0.3] * 256}
    ).encode()
    out = decoder.decode(raw, now_wall=5.0, now_mono=7.0)
    assert len(calls) == 1
    assert [s.signal for s in out.samples] == ["m.x", "m.y", "m.z", "m.id"]
    assert out.problems == []
    p = Payload(raw)
    assert p.doc is p.doc


def test_decoder_builds_good_samples_with_both_times() -> None:
    decoder = TopicDecoder(TOPIC, signals(("m.x", "x", "waveform"), ("m.t", "temp", None)))
    out = decoder.decode(b'{"ts": 1700000000500, "x": [1, 2, 3], "temp": 61.5}', 5.0, 7.0)
    x, t = out.samples
    assert x.is_waveform and x.value.shape == (3,)
    assert (t.value, t.quality, t.reason) == (61.5, Quality.GOOD, Reason.NONE)
    assert x.t_source == t.t_source == 1_700_000_000.5
    assert x.t_mono == t.t_mono == 7.0


def test_decoder_counts_each_signal_separately() -> None:
    decoder = TopicDecoder(TOPIC, signals(("a", "a", None), ("b", "b", None), ("c", "c", None)))
    out = decoder.decode(b'{"a": 1, "b": "x", "ts": "soon"}', 5.0, 7.0)
    assert [s.signal for s in out.samples] == ["a"]
    assert out.samples[0].t_source == 5.0  # bad time: the receive time stands in
    assert [(sid, m.reason) for sid, m in out.problems] == [
        ("a", BAD_TIME),
        ("b", "wrong_type"),
        ("c", "missing_key"),
    ]


def test_not_json_is_reported_for_every_signal_of_the_topic() -> None:
    decoder = TopicDecoder(TOPIC, signals(("a", "a", None), ("b", "b", None)))
    out = decoder.decode(b"{oops", 5.0, 7.0)
    assert out.samples == []
    assert [(sid, m.reason) for sid, m in out.problems] == [("a", "not_json"), ("b", "not_json")]


def test_first_good_payload_fixes_an_open_kind() -> None:
    decoder = TopicDecoder(TOPIC, signals(("v", "v", None)))
    assert decoder.kind_of("v") is None
    assert len(decoder.decode(b'{"v": [1, 2]}', 5.0, 7.0).samples) == 1
    assert decoder.kind_of("v") == "waveform"
    out = decoder.decode(b'{"v": 3}', 5.0, 7.0)
    assert out.samples == []
    assert out.problems[0][1].reason == "wrong_type"
    # a malformed first payload decides nothing
    fresh = TopicDecoder(TOPIC, signals(("v", "v", None)))
    fresh.decode(b'{"v": "x"}', 5.0, 7.0)
    assert fresh.kind_of("v") is None


def test_decoder_refuses_a_signal_of_another_topic() -> None:
    other = SignalConfig(id="o", source=MqttPoint("local", "other/topic", ("v",)))
    with pytest.raises(ValueError, match="does not read topic"):
        TopicDecoder(TOPIC, [other])


# --- never raises ------------------------------------------------------------------------------

_POINTS = [
    point(),
    point("v"),
    point("v", kind="scalar"),
    point("v", kind="waveform"),
    point("a.b[0]"),
    point("v", ts="ts"),
    point("v", max_payload=8),
    point("[0].v", ts="t[1]"),
]


def _check(result: object) -> None:
    if isinstance(result, Malformed):
        assert result.reason in MALFORMED_REASONS
        assert result.detail
        return
    assert isinstance(result, Extracted)
    v = result.value
    if isinstance(v, np.ndarray):
        assert v.ndim == 1 and v.size > 0 and np.isfinite(v).all()
    else:
        assert isinstance(v, (bool, float)) and math.isfinite(float(v))
    assert result.t_source is None or (math.isfinite(result.t_source) and result.t_source > 0)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    for p in _POINTS:
        _check(extract(raw, p))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(["v", "a", "b", "ts", "t", "x"]), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_arbitrary_json_never_raises(doc: object) -> None:
    raw = json.dumps(doc).encode()  # NaN and Infinity come through as literals
    for p in _POINTS:
        _check(extract(raw, p))
