"""OPC UA sources on asyncua (LGPL, used as a library): data-change subscriptions, each value
with its StatusCode as our quality and its source timestamp kept, and a supervisor of our own.

Why our own supervisor and not asyncua's auto_reconnect (new in 2026): we must mark every
value BAD within the device's timeout when the server restarts, stops answering or its
address goes silent, and count and say why; and recreate the session and subscriptions when
it returns. The supervisor checks the connection every `timeout / 2` with a request that
must answer (asyncua's check_connection), and on any failure tears the client down, marks
the values BAD (no communication, with the reason) and connects again with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua

from floorconsole.adapters.modbus import WriteResult
from floorconsole.core.clock import Clock, SystemClock
from floorconsole.core.config import SignalConfig
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.opcua import (
    BrowsedNode,
    OpcUaDeviceConfig,
    OpcUaNodePoint,
    StatusQuality,
    parse_node_id,
    status_quality,
)
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, waveform

log = logging.getLogger(__name__)

SECURITY_MODES = ("None", "Basic256Sha256-Sign", "Basic256Sha256-SignAndEncrypt")
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class OpcUaPoint:
    """One signal read from one node."""

    signal: str
    node: str  # a NodeId string, "ns=2;s=Line2.Press.Pressure"; "" when path names the node
    sampling_ms: float = 100.0
    queue_size: int = 10
    path: tuple[str, ...] = ()  # browse names under Objects: ("2:Plant", "2:Pressure")

    @property
    def label(self) -> str:
        return self.node or "/".join(self.path)


@dataclass(frozen=True, slots=True)
class OpcUaEndpoint:
    """One OPC UA server (a `protocol = "opc-ua"` device)."""

    id: str
    endpoint: str
    security: str = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    trusted_dir: Path | None = None  # servers whose certificate is in this folder are trusted
    username: str | None = None
    password_env: str | None = None
    publishing_ms: float = 200.0
    timeout_s: float = 4.0


_GOOD = StatusQuality(Quality.GOOD, Reason.NONE, "", False)


class OpcUaError(Exception):
    """A write or a set-up that failed, with the reason in words."""


class _Handler:
    """asyncua calls this for every data change, on our loop."""

    def __init__(self, source: OpcUaSource) -> None:
        self.source = source

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.source._on_change(node, data.monitored_item.Value)

    def status_change_notification(self, status: Any) -> None:
        self.source._on_status(status)


class OpcUaSource:
    """Subscribes to `points` on one server and hands Samples to `deliver` (on the loop)."""

    def __init__(
        self,
        endpoint: OpcUaEndpoint,
        points: Sequence[OpcUaPoint],
        deliver: Callable[[list[Sample]], None],
        *,
        clock: Clock | None = None,
        link: LinkStats | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.points = list(points)
        self.deliver = deliver
        self.clock = clock or SystemClock()
        self.link = link or LinkStats(endpoint.id, "device", endpoint.endpoint)
        for p in self.points:
            if p.node or not p.path:
                parse_node_id(p.node)  # a bad NodeId is a plant-file error, caught before here
        self._by_node: dict[str, OpcUaPoint] = {}
        self._client: Client | None = None
        self.overflows = 0  # notifications that said values were dropped in the server's queue
        self.notifications = 0
        self.last_error = ""
        self._lost = asyncio.Event()
        self._sub: Any = None
        self._batch: tuple[object, dict[str, int]] = (None, {})
        self._pending: list[Sample] = []
        self._was_up = False  # a session was ever established (before: a grace of timeout_s)
        self._flush_scheduled = False

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe and watch, until cancelled; values BAD whenever the server is
        not there."""
        attempt = 0
        started = self.clock.mono()
        while True:
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                await self._close()
                raise
            except Exception as e:  # noqa: BLE001 - any failure of the server or the link
                why = _describe(e)
                if not self._was_up and self.clock.mono() - started < self.endpoint.timeout_s:
                    # Not there yet at start (a server starting beside us): still connecting,
                    # values UNCERTAIN (no value yet); BAD once the timeout has passed.
                    self.link.set_state(LinkState.CONNECTING, self.clock.mono(), why)
                    self.link.errors += 1
                else:
                    self._down(why)
                attempt += 1
            await self._close()
            waiting = self.link.state is LinkState.CONNECTING and not self._was_up
            await asyncio.sleep(
                _BACKOFF_S[0] if waiting else _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            )

    async def _session(self) -> None:
        ep = self.endpoint
        self.link.set_state(LinkState.CONNECTING, self.clock.mono())
        client = Client(ep.endpoint, timeout=ep.timeout_s, watchdog_intervall=ep.timeout_s / 2)
        await self._secure(client)
        self._client = client
        await asyncio.wait_for(client.connect(), ep.timeout_s * 2)
        self._lost.clear()
        sub = await client.create_subscription(ep.publishing_ms, _Handler(self))
        self._sub = sub
        self._by_node.clear()
        # One CreateMonitoredItems request per sampling interval and queue size, not one per
        # node: a server with hundreds of signals, busy sending changes, is subscribed in a
        # few round trips.
        groups: dict[tuple[float, int], list[tuple[Node, OpcUaPoint]]] = {}
        for p in self.points:
            if p.node:
                node = client.get_node(p.node)
            else:
                try:
                    node = await client.nodes.objects.get_child(list(p.path))
                except ua.UaStatusCodeError as e:
                    why = f"browse path {'/'.join(p.path)}: {_status_name(e)}"
                    self._bad([p], Reason.CONFIG_ERROR, why)
                    continue
            self._by_node[node.nodeid.to_string()] = p
            groups.setdefault((p.sampling_ms, p.queue_size), []).append((node, p))
        for (sampling_ms, queue_size), items in groups.items():
            results = await sub.subscribe_data_change(
                [n for n, _ in items],
                queuesize=queue_size,
                sampling_interval=ua.Double(sampling_ms),
            )
            for (_n, p), result in zip(items, results, strict=True):
                if isinstance(result, ua.StatusCode):  # the server refused this node
                    self._bad([p], Reason.CONFIG_ERROR, f"{p.label}: {result.name}")
        self.link.set_state(LinkState.UP, self.clock.mono())
        self._was_up = True
        self.link.last_error = ""
        if self.last_error:
            self.link.reconnects += 1
            log.info("opc-ua %s: connected again", ep.id)
        self.last_error = ""
        while not self._lost.is_set():
            try:
                await asyncio.wait_for(self._lost.wait(), ep.timeout_s / 2)
            except TimeoutError:
                pass
            await asyncio.wait_for(client.check_connection(), ep.timeout_s)
        raise ConnectionError("the subscription stopped")

    async def _secure(self, client: Client) -> None:
        ep = self.endpoint
        if ep.username:
            client.set_user(ep.username)
        if ep.password_env:
            pw = os.environ.get(ep.password_env)
            if pw is None:
                raise OpcUaError(f"environment variable {ep.password_env} is not set")
            client.set_password(pw)
        if ep.security != "None":
            policy, mode = ep.security.split("-", 1)
            if ep.certificate is None or ep.private_key is None:
                raise OpcUaError(f"security {ep.security} needs certificate and private_key")
            client.application_uri = _certificate_uri(ep.certificate) or client.application_uri
            parts = [policy, mode, str(ep.certificate), str(ep.private_key)]
            if ep.server_certificate is not None:
                parts.append(str(ep.server_certificate))
            await client.set_security_string(",".join(parts))
            if ep.trusted_dir is not None:
                from asyncua.crypto.truststore import TrustStore
                from asyncua.crypto.validator import (
                    CertificateValidator,
                    CertificateValidatorOptions,
                )

                folder = Path(ep.trusted_dir)
                if not folder.is_dir() or not any(folder.iterdir()):
                    raise OpcUaError(f"trusted_dir {folder}: no server certificates in it")
                store = TrustStore([folder], [])
                await store.load()
                client.certificate_validator = CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION
                    | CertificateValidatorOptions.PEER_SERVER,
                    store,
                )

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # noqa: BLE001 - the server may be gone already
            try:
                client.disconnect_socket()
            except Exception:  # noqa: BLE001
                pass

    # -- values -----------------------------------------------------------------------------

    def _on_change(self, node: Node, dv: ua.DataValue) -> None:
        key = node.nodeid.to_string()
        p = self._by_node.get(key)
        if p is None:
            return
        self.notifications += 1
        self.link.messages += 1  # the links screen's "notifications" (no requests: subscribed)
        code = dv.StatusCode
        if code is None or not isinstance(code, ua.StatusCode) or code.value == 0:
            sq = _GOOD
        else:
            sq = status_quality(code.value, _status_name(code))
        if sq.overflow:
            self.overflows += 1
        elif self._queue_filled(key, p) and sq.quality is Quality.GOOD:
            # asyncua's server (and others) drop the oldest of a full queue without setting
            # the Overflow bit: a publish that brings as many values of an item as its queue
            # holds is the sign. Counted, and this value says so.
            self.overflows += 1
            sq = StatusQuality(
                Quality.UNCERTAIN,
                Reason.LAST_USABLE,
                f"server queue full ({p.queue_size} values in one publish): earlier values "
                "may have been lost",
                True,
            )
        ts = dv.SourceTimestamp or dv.ServerTimestamp
        if ts is None:
            t_source = self.clock.wall()
        else:
            t_source = (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp()
        value = _value(dv.Value.Value if dv.Value is not None else None)
        if value is None and sq.quality is Quality.GOOD:
            sq_q, reason, detail = Quality.BAD, Reason.DECODE_ERROR, "no value in the notification"
        else:
            sq_q, reason, detail = sq.quality, sq.reason, sq.detail
        self._emit(Sample(p.signal, value, sq_q, reason, t_source, self.clock.mono(), detail))

    def _emit(self, sample: Sample) -> None:
        """asyncua calls the handler once per value, all of a publish in one go: the samples
        are handed on together on the next loop turn (one hub ingest, one historian append
        per publish rather than per value)."""
        self._pending.append(sample)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            self.deliver(batch)

    def _queue_filled(self, key: str, p: OpcUaPoint) -> bool:
        """Whether this notification is the queue_size-th of its item in one publish."""
        seq = getattr(self._sub, "last_sequence_number", None)
        if self._batch[0] != seq:
            self._batch = (seq, {})
        counts = self._batch[1]
        counts[key] = counts.get(key, 0) + 1
        return p.queue_size >= 2 and counts[key] == p.queue_size

    def _on_status(self, status: Any) -> None:
        self._lost.set()

    def _down(self, why: str) -> None:
        first = self.last_error != why
        self.last_error = why
        went_down = self.link.set_state(LinkState.DOWN, self.clock.mono(), why)
        self.link.errors += 1
        if first:
            log.warning("opc-ua %s (%s): %s", self.endpoint.id, self.endpoint.endpoint, why)
        if first or went_down:
            # BAD when it goes down or the reason changes, not again at every retry: an
            # outage does not fill the historian with copies
            self._bad(self.points, Reason.NO_COMM, why)

    def _bad(self, points: Sequence[OpcUaPoint], reason: Reason, why: str) -> None:
        self._flush()  # values received before the failure go first, then BAD
        now_w, now_m = self.clock.wall(), self.clock.mono()
        self.deliver(
            [Sample(p.signal, None, Quality.BAD, reason, now_w, now_m, why) for p in points]
        )

    # -- writes -----------------------------------------------------------------------------

    async def write(self, node_id: str, value: float | int | bool | str) -> object:
        """Write one value in the node's own type, then read it back; returns what was read
        back, or raises OpcUaError saying what the server answered."""
        client = self._client
        if client is None or self.link.state is not LinkState.UP:
            raise OpcUaError(f"{self.endpoint.id} is not connected: not applied")
        node = client.get_node(node_id)
        try:
            vtype = await node.read_data_type_as_variant_type()
            await node.write_value(ua.DataValue(ua.Variant(_as(vtype, value), vtype)))
            back = await node.read_data_value(raise_on_bad_status=False)
        except ua.UaStatusCodeError as e:
            raise OpcUaError(
                f"{node_id}: the server refused the write ({_status_name(e)})"
            ) from None
        except (TimeoutError, OSError) as e:
            raise OpcUaError(f"{node_id}: no answer to the write ({_describe(e)})") from None
        got = back.Value.Value if back.Value is not None else None
        if not _same(got, value):
            raise OpcUaError(f"{node_id}: wrote {value!r}, read back {got!r}")
        return got

    async def write_point(self, point: OpcUaNodePoint, value: float | bool) -> WriteResult:
        """A rule's or a person's write, as the control layer records it: ok only when the
        value read back is the value written; a write the server refuses says its status."""
        started = time.perf_counter()

        def result(ok: bool, attempts: int, error: str = "", back: Any = None) -> WriteResult:
            ms = (time.perf_counter() - started) * 1000.0
            return WriteResult(ok, attempts, value, back, error, ms)

        if point.device != self.endpoint.id:
            return result(False, 0, f"not applied: {point.label} is on {point.device!r}")
        if not point.node:
            return result(False, 0, "not applied: writes name a node (ns=...), not a browse path")
        if self._client is None or self.link.state is not LinkState.UP:
            why = self.last_error or "not connected"
            return result(False, 0, f"not applied: device down ({why})")
        try:
            back = await asyncio.wait_for(self.write(point.node, value), self.endpoint.timeout_s)
        except OpcUaError as e:
            applied = "not connected" not in str(e)
            return result(False, 1 if applied else 0, str(e) if applied else f"not applied: {e}")
        except TimeoutError:
            return result(False, 1, f"{point.node}: no answer within the timeout")
        return result(True, 1, back=back if isinstance(back, bool | int | float) else None)

    async def read_point(self, point: OpcUaNodePoint) -> tuple[float | bool | None, str]:
        """One node read now: (value, "") or (None, why)."""
        client = self._client
        if client is None or self.link.state is not LinkState.UP:
            return None, f"device down ({self.last_error or 'not connected'})"
        try:
            dv = await asyncio.wait_for(
                client.get_node(point.node).read_data_value(raise_on_bad_status=False),
                self.endpoint.timeout_s,
            )
        except ua.UaStatusCodeError as e:
            return None, f"{point.label}: {_status_name(e)}"
        except (TimeoutError, OSError) as e:
            return None, f"{point.label}: {_describe(e)}"
        if dv.StatusCode is not None and not dv.StatusCode.is_good():
            return None, f"{point.label}: {_status_name(dv.StatusCode)}"
        v = dv.Value.Value if dv.Value is not None else None
        return (v, "") if isinstance(v, bool | int | float) else (None, f"{point.label}: {v!r}")


def endpoint_of(device: OpcUaDeviceConfig) -> OpcUaEndpoint:
    """How to reach a plant file's `protocol = "opc-ua"` device."""
    return OpcUaEndpoint(
        id=device.id,
        endpoint=device.endpoint,
        security=device.security,
        certificate=device.certificate,
        private_key=device.private_key,
        server_certificate=device.server_certificate,
        trusted_dir=device.trusted_dir,
        username=device.username,
        password_env=device.password_env,
        publishing_ms=device.publishing_s * 1000.0,
        timeout_s=device.timeout_s,
    )


def engine_source(
    device: OpcUaDeviceConfig,
    signals: Sequence[SignalConfig],
    ingest: Callable[[list[Sample]], None],
    clock: Clock,
    link: LinkStats,
) -> OpcUaSource:
    """The source an engine runs for one `protocol = "opc-ua"` device: its samples go to
    `ingest` (the hub's) as the hub takes them: arrays as waveforms, and a text or byte-string
    node BAD (the historian records numbers), saying so."""
    endpoint = endpoint_of(device)
    points = []
    for s in signals:
        src = s.source
        assert isinstance(src, OpcUaNodePoint)
        points.append(
            OpcUaPoint(s.id, src.node, src.sampling_s * 1000.0, src.queue_size, src.browse_path)
        )

    def deliver(samples: list[Sample]) -> None:
        ingest([_for_hub(x) for x in samples])

    return OpcUaSource(endpoint, points, deliver, clock=clock, link=link)


def _for_hub(s: Sample) -> Sample:
    v: Any = s.value
    if isinstance(v, tuple):
        return s._replace(value=waveform(v))
    if isinstance(v, str):
        shown = v if len(v) <= 20 else v[:19] + "…"
        return s._replace(
            value=None,
            quality=Quality.BAD,
            reason=Reason.DECODE_ERROR,
            detail=f"a text value ({shown!r}): floorconsole records numbers",
        )
    return s


OBJECTS_FOLDER = "i=85"
SERVER_OBJECT = "i=2253"  # the server's own diagnostics: not plant data


async def browse(
    endpoint: OpcUaEndpoint, node: str | None = None, *, depth: int = 4, max_children: int = 200
) -> BrowsedNode:
    """The address space under `node` (default: the Objects folder, without the server's own
    object), `depth` levels down, with each variable's type and current value."""
    if node is not None:
        parse_node_id(node)
    src = OpcUaSource(endpoint, [], lambda samples: None)
    client = Client(endpoint.endpoint, timeout=endpoint.timeout_s)
    await src._secure(client)
    try:
        await asyncio.wait_for(client.connect(), endpoint.timeout_s * 2)
    except Exception as e:  # noqa: BLE001
        raise OpcUaError(f"cannot connect to {endpoint.endpoint}: {_describe(e)}") from None
    try:
        start = client.get_node(node or OBJECTS_FOLDER)
        return await _browse_node(start, depth, max_children)
    except ua.UaStatusCodeError as e:
        raise OpcUaError(f"{node}: {_status_name(e)}") from None
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # noqa: BLE001
            pass


async def _browse_node(n: Node, depth: int, max_children: int) -> BrowsedNode:
    node_id = n.nodeid.to_string()
    name = (await n.read_browse_name()).Name or node_id
    node_class = (await n.read_node_class()).name
    data_type = value = status = ""
    if node_class == "Variable":
        try:
            vt = await n.read_data_type_as_variant_type()
            dv = await n.read_data_value(raise_on_bad_status=False)
            v = dv.Value.Value if dv.Value is not None else None
            data_type = vt.name + ("[]" if isinstance(v, list) else "")
            text = repr(v) if not isinstance(v, str) else v
            value = text if len(text) <= 40 else text[:39] + "…"
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                status = _status_name(dv.StatusCode)
        except ua.UaStatusCodeError as e:
            status = _status_name(e)
    children: list[BrowsedNode] = []
    truncated = False
    if depth > 0 and node_class in ("Object", "Folder"):
        kids = [c for c in await n.get_children() if c.nodeid.to_string() != SERVER_OBJECT]
        truncated = len(kids) > max_children
        for c in kids[:max_children]:
            children.append(await _browse_node(c, depth - 1, max_children))
    return BrowsedNode(
        node_id, name, node_class, data_type, value, status, tuple(children), truncated
    )


def _status_name(s: Any) -> str:
    name = getattr(s, "name", None)
    if isinstance(name, str) and name:
        return name
    code = getattr(s, "code", None)
    if isinstance(code, int):
        try:
            return str(ua.StatusCode(ua.UInt32(code)).name)
        except Exception:  # noqa: BLE001 - a code the stack has no name for
            return f"0x{code:08X}"
    return str(s)


def _certificate_uri(path: Path) -> str | None:
    """The application URI in a certificate's subject alternative names: the client must
    announce the URI its certificate carries, or a server that checks it refuses us."""
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.startswith(b"-----")
            else x509.load_der_x509_certificate(data)
        )
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound) as e:
        raise OpcUaError(f"certificate {path}: not readable ({e})") from None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _describe(e: BaseException) -> str:
    if isinstance(e, ua.UaStatusCodeError):
        return f"the server answered {_status_name(e)}"
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        return "no answer within the timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _value(v: Any) -> Any:
    """A value the hub takes: numbers and bools as they are, arrays as tuples of floats (a
    waveform), date-times as epoch seconds, text as text, anything else None."""
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    if isinstance(v, bytes | bytearray):
        return v.hex()
    if isinstance(v, list | tuple):
        try:
            return tuple(float(x) for x in v)
        except (TypeError, ValueError):
            return None
    return None


def _as(vtype: ua.VariantType, value: Any) -> Any:
    if vtype == ua.VariantType.Boolean:
        return bool(value)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vtype == ua.VariantType.String:
        return str(value)
    return int(value)


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, float) or isinstance(want, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return bool(got == want)


def wall_ms() -> int:
    return int(time.time() * 1000)
