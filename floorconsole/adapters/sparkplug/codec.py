"""Sparkplug B payloads from floorconsole values: a metric per value, with its quality as a
metric property (the OPC UA-style code Sparkplug hosts read, and our reason in words)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.core.quality import Quality
from floorconsole.core.sparkplug import DataType, Metric

# The quality codes Sparkplug hosts (Ignition's MQTT Engine among them) read from a metric's
# "Quality" property: OPC DA style, 192 good, 64 uncertain, 0 bad.
QUALITY_CODE = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}
CODE_QUALITY = {v: k for k, v in QUALITY_CODE.items()}

__all__ = ["DataType", "Metric", "decode", "encode"]


def encode(metrics: Iterable[Metric], *, seq: int | None, timestamp_ms: int) -> bytes:
    """A Sparkplug B Payload. A None value (or a non-finite float) is sent as is_null."""
    p = spb.Payload()
    p.timestamp = timestamp_ms
    if seq is not None:
        if not 0 <= seq <= 255:
            raise ValueError(f"Sparkplug seq is 0-255, not {seq}")
        p.seq = seq
    for m in metrics:
        fill_metric(p.metrics.add(), m)
    return p.SerializeToString()


def fill_metric(pm: spb.Payload.Metric, m: Metric, *, datatype: bool = True) -> None:
    """One metric of a payload. datatype=False leaves the type out, as the specification
    recommends for data messages (a host knows it from the birth)."""
    if m.name is not None:
        pm.name = m.name
    if m.alias is not None:
        pm.alias = m.alias
    pm.timestamp = m.timestamp_ms
    if datatype:
        pm.datatype = m.datatype
    if m.historical:
        pm.is_historical = True
    _set_value(pm, m.datatype, m.value)
    props = pm.properties
    if m.unit:
        props.keys.append("engUnit")
        u = props.values.add()
        u.type = DataType.String
        u.string_value = m.unit
    props.keys.append("Quality")
    q = props.values.add()
    q.type = DataType.Int32
    q.int_value = QUALITY_CODE[m.quality]
    if m.reason:
        props.keys.append("quality_reason")
        r = props.values.add()
        r.type = DataType.String
        r.string_value = m.reason


def _set_value(pm: spb.Payload.Metric, datatype: int, value: object) -> None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        pm.is_null = True
    elif datatype == DataType.Boolean:
        pm.boolean_value = bool(value)
    elif datatype in (DataType.Float,):
        pm.float_value = float(value)  # type: ignore[arg-type]
    elif datatype == DataType.Double:
        pm.double_value = float(value)  # type: ignore[arg-type]
    elif datatype in (DataType.Int8, DataType.Int16, DataType.Int32):
        pm.int_value = int(value) & 0xFFFFFFFF  # type: ignore[call-overload]
    elif datatype in (DataType.UInt8, DataType.UInt16, DataType.UInt32):
        pm.int_value = int(value)  # type: ignore[call-overload]
    elif datatype in (DataType.Int64, DataType.UInt64, DataType.DateTime):
        pm.long_value = int(value) & 0xFFFFFFFFFFFFFFFF  # type: ignore[call-overload]
    elif datatype in (DataType.String, DataType.Text, DataType.UUID):
        pm.string_value = str(value)
    else:
        raise ValueError(f"datatype {datatype} is not one floorconsole sends")


def decode(data: bytes) -> tuple[int | None, int, list[Metric]]:
    """(seq, timestamp_ms, metrics) of a payload; for hosts written in tests and for NCMD."""
    p = spb.Payload()
    p.ParseFromString(data)
    out = []
    for pm in p.metrics:
        props = dict(zip(pm.properties.keys, pm.properties.values, strict=False))
        q = props.get("Quality")
        r = props.get("quality_reason")
        u = props.get("engUnit")
        value: float | int | bool | str | None
        kind = pm.WhichOneof("value")
        if pm.is_null or kind is None:
            value = None
        else:
            value = getattr(pm, kind)
            if kind == "int_value" and pm.datatype in (
                DataType.Int8,
                DataType.Int16,
                DataType.Int32,
            ):
                value = _signed(pm.int_value, 32)
            elif kind == "long_value" and pm.datatype == DataType.Int64:
                value = _signed(pm.long_value, 64)
        out.append(
            Metric(
                pm.name if pm.HasField("name") else None,
                pm.alias if pm.HasField("alias") else None,
                pm.timestamp,
                pm.datatype,
                value,
                CODE_QUALITY.get(q.int_value, Quality.BAD) if q is not None else Quality.GOOD,
                r.string_value if r is not None else "",
                pm.is_historical,
                u.string_value if u is not None else "",
            )
        )
    return (p.seq if p.HasField("seq") else None), p.timestamp, out


def _signed(raw: int, bits: int) -> int:
    """Sparkplug carries signed integers in unsigned fields (two's complement)."""
    return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw
