"""The Sparkplug B classes match the specification's .proto, and our payloads round-trip
through them with quality as a metric property."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.adapters.sparkplug.codec import DataType, Metric, decode, encode
from floorconsole.core.quality import Quality

ROOT = Path(__file__).resolve().parents[1]


def test_generated_classes_match_the_proto() -> None:
    pytest.importorskip("grpc_tools")
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_sparkplug.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout


def test_the_proto_keeps_its_licence_header() -> None:
    head = (ROOT / "floorconsole/adapters/sparkplug/sparkplug_b.proto").read_text()[:400]
    assert "Eclipse Public License 2.0" in head and "SPDX-License-Identifier: EPL-2.0" in head


def test_metrics_round_trip_with_quality_and_reason() -> None:
    metrics = [
        Metric("motor1/current", 1, 1_790_000_000_123, DataType.Double, 12.5),
        Metric(None, 2, 1_790_000_000_124, DataType.Int16, -7, Quality.UNCERTAIN, "last usable"),
        Metric(None, 3, 1_790_000_000_125, DataType.Boolean, None, Quality.BAD, "no communication"),
        Metric("bdSeq", None, 1_790_000_000_126, DataType.Int64, 255),
        Metric(
            None, 4, 1_790_000_000_127, DataType.Float, float("nan"), Quality.BAD, "decoding", True
        ),
    ]
    data = encode(metrics, seq=17, timestamp_ms=1_790_000_000_200)
    seq, ts, back = decode(data)
    assert (seq, ts) == (17, 1_790_000_000_200)
    assert back[:4] == metrics[:4]
    assert back[4].value is None and back[4].historical and back[4].quality is Quality.BAD
    # what any Sparkplug host reads: the standard Quality property
    p = spb.Payload.FromString(data)
    assert p.metrics[2].is_null and p.metrics[2].properties.keys[0] == "Quality"
    assert p.metrics[2].properties.values[0].int_value == 0
    assert p.metrics[0].properties.values[0].int_value == 192


def test_seq_outside_0_255_is_refused() -> None:
    with pytest.raises(ValueError, match="0-255"):
        encode([], seq=256, timestamp_ms=0)
