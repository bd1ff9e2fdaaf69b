"""The uplink outbox: messages for the plant broker, kept in the historian's SQLite file."""

from __future__ import annotations

import bisect
import json
import logging
import re
import sqlite3
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from floorconsole.adapters.historian import apply_pragmas
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.uplink import SampleEncoder, UplinkConfig, chunk_entries, record_json

log = logging.getLogger(__name__)

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq  INTEGER PRIMARY KEY,  -- rises by one per message for the life of the data directory
    kind TEXT NOT NULL,        -- data | alarms | audit: the last level of its topic
    boot TEXT NOT NULL,        -- the engine run that recorded it
    t    REAL NOT NULL,        -- wall time of its oldest entry
    n    INTEGER NOT NULL,     -- entries (samples or records) in it
    body BLOB NOT NULL,        -- JSON array of the entries; the envelope is added when sent.
                               -- Empty when spb holds them: Outbox.body_of rebuilds it
    spb  BLOB                  -- a data message's Sparkplug form, when one was made (RowEncoder)
);
CREATE TABLE IF NOT EXISTS outbox_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_plans (  -- the alias plans spb rows were made with
    fingerprint BLOB PRIMARY KEY,
    plan        TEXT NOT NULL
);
"""
SAVE_PLAN = "INSERT OR IGNORE INTO outbox_plans (fingerprint, plan) VALUES (?, ?)"
# A stored message's size: its JSON body, or its other form when that stands alone.
_SIZE_SQL = "CASE WHEN length(body) > 0 THEN length(body) ELSE coalesce(length(spb), 0) END"
INSERT_MESSAGE = (
    "INSERT INTO outbox (seq, kind, boot, t, n, body, spb) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SAVE_NEXT_SEQ = "INSERT OR REPLACE INTO outbox_meta (key, value) VALUES ('next_seq', ?)"
DELETE_MESSAGE = "DELETE FROM outbox WHERE seq = ?"
_BUSY_TIMEOUT_S = 2.0
_TABLE = re.compile(r"^[a-z_]+$")
_DROP_PAGE = 1000


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored message: its body is the JSON array of its entries. spb: its entries in
    another wire form made when they were recorded (the Sparkplug uplink's); None when none
    was made. A message with that form has an empty body (Outbox.body_of and
    Outbox.entries_of read it back)."""

    seq: int
    kind: str
    boot: str
    t: float
    n: int
    body: bytes
    spb: bytes | None = None

    @property
    def size(self) -> int:
        """Bytes it takes in the table, as the backlog bound counts them."""
        return len(self.body) or len(self.spb or b"")


class RowEncoder(Protocol):
    """Another wire form of a data message, made once on the writer thread from the very
    samples of its body (so the publisher need not parse JSON): bytes, or None when this
    message has none (the publisher then works from the body)."""

    def encode_row(self, samples: Sequence[Sample]) -> bytes | None: ...

    def plan_text(self, fingerprint: bytes) -> str | None:
        """How to read rows back (stored in outbox_plans with them): see sparkplug/rows.py."""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    rows: int  # entries waiting (samples and records), in flight included
    bytes: int  # bytes they take in the table (their JSON, or their Sparkplug form alone)
    messages: int
    next_seq: int
    full: bool  # the last write met a capacity bound
    dropped: tuple[tuple[str, int], ...]  # (reason, entries) in a fixed order
    disk_full: int  # transactions refused with SQLITE_FULL
    errors: int
    last_error: str
    oldest_t: float | None  # wall time of the oldest waiting entry (publisher refreshes it)


DROP_REASONS = ("backlog_full", "not_stored", "unencodable", "unreadable", "internal_error")


def _drop_below(staged: list[tuple[str, float, int]], floor: int) -> int:
    """Remove the entries whose index is below floor (they are in index order)."""
    k = bisect.bisect_left(staged, floor, key=lambda e: e[2])
    del staged[:k]
    return k


def _error_text(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"


class Outbox:
    """Messages waiting for the plant broker, written in the historian's own transactions.

    Writer side (the historian's writer thread, through the CommitHook methods open, stage,
    dropped_pending, pending, write, committed, rolled_back): samples are encoded once when
    staged; at each commit they become messages of up to `batch` entries, inserted in the same
    transaction as the history rows, so both are stored or neither is. A failed transaction
    (SQLITE_FULL among others) gives its seqs back and keeps the entries staged for the next
    one; when the historian gives up rows it holds in memory, the same entries are given up
    here and counted (not_stored).

    Consumer side (one publisher thread): open_live/take_live for messages committed while
    the link is open, read_backlog for the rest in seq order, claim before handing a message
    to the broker client, delete_acked after its PUBACK. Nothing leaves the table otherwise,
    except by the drop_oldest policy, which never touches a claimed message.
    """

    def __init__(
        self,
        config: UplinkConfig,
        *,
        boot: str | None = None,
        max_live_messages: int = 10_000,
        table: str = "outbox",
    ) -> None:
        if not _TABLE.match(table):
            raise ValueError(f"outbox table {table!r}: lower-case letters and _ only")
        # Another table for a second uplink beside the first ([uplink] format = "both"): each
        # has its own rows, deleted after its own broker's PUBACK, so neither loses data
        # while the other's broker is down.
        self.table = table
        self._sql_cache: dict[str, str] = {}
        # A second outbox fed from the same commits (its rows in the same transactions).
        self.secondary: Outbox | None = None
        self.config = config
        self.boot = boot or uuid.uuid4().hex[:12]
        self.path: Path | None = None
        self._encoder = SampleEncoder(config.exclude)
        self.set_labels = self._encoder.labels.update  # enumerated signals: {id: labels}
        self._max_live = max_live_messages
        self._lock = threading.Lock()
        self._waker: Callable[[], None] = lambda: None
        # Set by an uplink that sends data in another form (Sparkplug): staged scalar
        # entries then keep their sample, and each data message gets that form too.
        self.row_encoder: RowEncoder | None = None

        # Writer thread only. Staged entries are (json, wall time, index[, sample]); the index counts
        # every scalar (or waveform) sample the historian was given, so its pending bound
        # drops exactly the same samples here.
        self._staged: list[tuple[Any, ...]] = []  # (json, wall time, index[, sample])
        self._staged_waves: list[tuple[str, float, int]] = []
        self._scalar_index = 0
        self._wave_index = 0
        self._scalar_floor = 0
        self._wave_floor = 0
        self._next_seq = 0
        self._seq_before = 0
        self._written: list[OutboxMessage] | None = None
        self._rejected = 0
        self._taken_events: dict[str, list[tuple[str, float]]] = {}
        self._plans_saved: set[bytes] = set()  # in outbox_plans (committed)
        self._plans_saving: set[bytes] = set()  # written in the open transaction

        # Shared, under _lock.
        self._events: dict[str, list[tuple[str, float]]] = {"alarms": [], "audit": []}
        self._rows = 0
        self._bytes = 0
        self._messages = 0
        self._committed_next = 0
        self._live_open = False
        self._live_overflow = False
        self._live: deque[OutboxMessage] = deque()
        self._claimed: set[int] = set()
        # drop_oldest deleted every unclaimed row below _drop_floor; _survivors are the
        # claimed ones it skipped (a claim can be released, e.g. on a reconnect).
        self._drop_floor = 0
        self._survivors: set[int] = set()
        self._dropped: Counter[str] = Counter()
        self._full = False
        self._disk_full = 0
        self._errors = 0
        self._last_error = ""
        self._oldest_t: float | None = None

        # Consumer thread only.
        self._rconn: sqlite3.Connection | None = None
        self._plans: dict[bytes, Any] = {}  # fingerprint -> RowPlan (sparkplug/rows.py)
        self._unreadable: set[int] = set()  # seqs counted as unreadable (rare: a lost plan)

    def _sql(self, text: str) -> str:
        """A statement on this outbox's table (and its own next_seq in outbox_meta)."""
        if self.table == "outbox":
            return text
        out = self._sql_cache.get(text)
        if out is None:
            out = re.sub(r"\boutbox\b", self.table, text)
            out = out.replace("'next_seq'", f"'next_seq:{self.table}'")
            self._sql_cache[text] = out
        return out

    # ------------------------------------------------------------------ hook: writer thread

    def open(self, conn: sqlite3.Connection, path: Path) -> None:
        """Create the tables in the historian's database and load the counters."""
        self.path = Path(path)
        conn.executescript(self._sql(OUTBOX_SCHEMA))
        columns = {r[1] for r in conn.execute(self._sql("PRAGMA table_info(outbox)"))}
        if "spb" not in columns:  # a table an earlier floorconsole made
            conn.execute(self._sql("ALTER TABLE outbox ADD COLUMN spb BLOB"))
        saved = conn.execute(
            self._sql("SELECT value FROM outbox_meta WHERE key = 'next_seq'")
        ).fetchone()
        rows, size, messages, top, oldest = conn.execute(
            self._sql(
                f"SELECT coalesce(sum(n), 0), coalesce(sum({_SIZE_SQL}), 0), count(*), "
                "max(seq), min(t) FROM outbox"
            )
        ).fetchone()
        nxt = max(saved[0] if saved else 0, (top + 1) if top is not None else 0)
        with self._lock:
            self._next_seq = self._seq_before = self._committed_next = nxt
            self._rows, self._bytes, self._messages = rows, size, messages
            self._oldest_t = oldest
        if self.secondary is not None:
            self.secondary.open(conn, path)

    def stage(self, samples: Sequence[Sample]) -> None:
        """Encode samples the historian took into this commit (called after it converted them)."""
        encode = self._encoder.encode
        staged, waves = self._staged, self._staged_waves
        ndarray = np.ndarray
        # Another form is made at the commit: a scalar keeps its sample, and its JSON is made
        # then only if its row gets no other form (_data_rows).
        keep = self.row_encoder is not None
        skips = self._encoder.skips
        heads_get = self._encoder.heads.get
        for s in samples:
            if keep:
                t = s.t_source
                if (
                    t.__class__ is float
                    and t - t == 0.0
                    and not isinstance(s.value, ndarray)  # as the historian tells waveforms
                    and s.signal.__class__ is str
                ):
                    head = heads_get(s.signal, "")  # None: excluded; "": not seen yet
                    if head or (head == "" and not skips(s.signal)):
                        staged.append((None, t, self._scalar_index, s))
                    self._scalar_index += 1
                    continue
            try:
                out = encode(s)
            except Exception as exc:  # noqa: BLE001 - one odd value must not stop the rest
                out = None
                with self._lock:
                    self._dropped["unencodable"] += 1
                    self._last_error = f"cannot encode {getattr(s, 'signal', s)!r}: {exc}"
            # Classified as the historian does, so the pending-bound indexes match its rows.
            if isinstance(getattr(s, "value", None), ndarray):
                if out is not None:
                    waves.append((out[0], s.t_source, self._wave_index))
                self._wave_index += 1
            else:
                if out is not None:
                    if keep:
                        staged.append((out[0], s.t_source, self._scalar_index, s))
                    else:
                        staged.append((out[0], s.t_source, self._scalar_index))
                self._scalar_index += 1
        if self.secondary is not None:
            self.secondary.stage(samples)

    def dropped_pending(self, rows: int, waveforms: int) -> None:
        """The historian gave up its `rows` oldest pending scalar rows and `waveforms` oldest
        blocks (it could not commit them in time): give up the same samples here."""
        self._scalar_floor += rows
        self._wave_floor += waveforms
        lost = _drop_below(self._staged, self._scalar_floor)
        lost += _drop_below(self._staged_waves, self._wave_floor)
        if lost:
            with self._lock:
                self._dropped["not_stored"] += lost
        if self.secondary is not None:
            self.secondary.dropped_pending(rows, waveforms)

    @property
    def pending(self) -> bool:
        return bool(
            self._staged or self._staged_waves or self._events["alarms"] or self._events["audit"]
        ) or (self.secondary is not None and self.secondary.pending)

    def write(self, conn: sqlite3.Connection) -> None:
        """Inside the historian's transaction: insert the staged entries as messages."""
        self._seq_before = self._next_seq
        self._written = []
        self._rejected = 0
        with self._lock:
            events, self._events = self._events, {"alarms": [], "audit": []}
        self._taken_events = events
        try:
            self._write(conn, events)
        except sqlite3.Error:
            raise  # the transaction fails; rolled_back() gives everything back
        except Exception as exc:  # noqa: BLE001
            # A bug here must not hold the history back with it: undo our part of the
            # transaction, give these entries up (counted) and let the samples commit.
            log.exception("uplink outbox: messages not written")
            conn.execute(self._sql("DELETE FROM outbox WHERE seq >= ?"), (self._seq_before,))
            lost = (
                len(self._staged) + len(self._staged_waves) + sum(len(v) for v in events.values())
            )
            self._next_seq = self._seq_before
            self._written = []
            self._rejected = 0
            self._taken_events = {}
            with self._lock:
                self._dropped["internal_error"] += lost
                self._errors += 1
                self._last_error = f"messages not written: {exc!r}"
        if self.secondary is not None:
            self.secondary.write(conn)

    def _write(self, conn: sqlite3.Connection, events: dict[str, list[tuple[str, float]]]) -> None:
        written = self._written
        assert written is not None
        with self._lock:
            rows, size = self._rows, self._bytes
        cfg = self.config
        reject = cfg.on_full == "reject_new"
        groups: tuple[tuple[str, Sequence[tuple[Any, ...]]], ...] = (
            ("data", self._staged),
            ("data", self._staged_waves),
            ("alarms", events["alarms"]),
            ("audit", events["audit"]),
        )
        other = self.row_encoder
        for kind, entries in groups:
            if not entries:
                continue
            if other is not None and entries is self._staged:
                chunks = self._data_rows(other, entries)
            else:
                chunks = [
                    (body, None, t, n)
                    for body, t, n in chunk_entries(entries, cfg.batch, cfg.max_message_bytes)
                ]
            for body, spb, t, n in chunks:
                seq = self._next_seq
                self._next_seq += 1
                m = OutboxMessage(seq, kind, self.boot, t, n, body, spb)
                if reject and (
                    rows + n > cfg.max_backlog_rows or size + m.size > cfg.max_backlog_bytes
                ):
                    # The seq stays used: the receiver sees the gap that was counted here.
                    self._rejected += n
                    continue
                rows += n
                size += m.size
                written.append(m)
        if written:
            conn.executemany(
                self._sql(INSERT_MESSAGE),
                [(m.seq, m.kind, m.boot, m.t, m.n, m.body, m.spb) for m in written],
            )
            if other is not None:
                self._save_plans(conn, other, written)
        if self._next_seq != self._seq_before:
            conn.execute(self._sql(SAVE_NEXT_SEQ), (self._next_seq,))

    def _data_rows(
        self, other: RowEncoder, entries: Sequence[tuple[Any, ...]]
    ) -> list[tuple[bytes, bytes | None, float, int]]:
        """Staged samples as rows of up to `batch`: (body, other form, oldest time, count).
        A row the encoder gives its form is stored with that alone; the others get their JSON
        made here and chunked as usual (and the form no longer)."""
        cfg = self.config
        batch, max_bytes = cfg.batch, cfg.max_message_bytes
        encode = self._encoder.encode
        bound = self._encoder.entry_bound
        worst = self._encoder.worst_entry_bound()
        staged = self._staged
        out: list[tuple[bytes, bytes | None, float, int]] = []
        for i in range(0, len(entries), batch):
            chunk = entries[i : i + batch]
            samples = [e[3] for e in chunk]
            try:
                spb = other.encode_row(samples)
            except Exception:  # noqa: BLE001 - the row goes as JSON
                log.debug("outbox: no other form for a row", exc_info=True)
                spb = None
            # Stored in that form alone only if its JSON, made again by body_of (a JSON
            # uplink after the format changed), would fit in a message too.
            if (
                spb is not None
                and len(spb) <= max_bytes
                and (
                    2 + len(samples) * worst <= max_bytes
                    or 2 + sum(bound(s.signal) for s in samples) <= max_bytes
                )
            ):
                out.append((b"", spb, min(e[1] for e in chunk), len(chunk)))
                continue
            texts: list[tuple[str, float]] = []
            for k, e in enumerate(chunk, i):
                text = e[0]
                if text is None:
                    try:
                        got = encode(e[3])
                    except Exception as exc:  # noqa: BLE001 - as stage() counts it
                        got = None
                        with self._lock:
                            self._dropped["unencodable"] += 1
                            self._last_error = f"cannot encode {e[3].signal!r}: {exc}"
                    # Kept: a transaction that fails encodes (and counts) nothing again.
                    text = "" if got is None else got[0]
                    if entries is staged:
                        staged[k] = (text, *e[1:])
                if text:
                    texts.append((text, e[1]))
            out.extend((b, None, t, n) for b, t, n in chunk_entries(texts, batch, max_bytes))
        return out

    def _save_plans(
        self, conn: sqlite3.Connection, other: RowEncoder, written: Sequence[OutboxMessage]
    ) -> None:
        """The plans of the rows just written, in their transaction (once per plan)."""
        # Here, not at the top: a JSON-only engine does not load protobuf (see bootstrap).
        from floorconsole.adapters.sparkplug.rows import row_fingerprint

        fps = {row_fingerprint(m.spb) for m in written if m.spb is not None}
        for fp in fps - self._plans_saved - {None}:
            text = other.plan_text(fp)  # type: ignore[arg-type]
            if text is not None:
                conn.execute(SAVE_PLAN, (fp, text))
                self._plans_saving.add(fp)  # type: ignore[arg-type]

    def committed(self, conn: sqlite3.Connection) -> None:
        """The transaction is in: publish the new messages to the consumer, apply on_full."""
        written, self._written = self._written or [], None
        self._staged.clear()
        self._staged_waves.clear()
        self._scalar_floor = self._scalar_index
        self._wave_floor = self._wave_index
        self._taken_events = {}
        self._plans_saved |= self._plans_saving
        self._plans_saving.clear()
        with self._lock:
            for m in written:
                self._rows += m.n
                self._bytes += m.size
            self._messages += len(written)
            self._committed_next = self._next_seq
            if written and self._oldest_t is None:
                self._oldest_t = min(m.t for m in written)
            if self._rejected:
                self._dropped["backlog_full"] += self._rejected
                self._full = True
            else:
                self._full = False
            if self._live_open and written:
                if len(self._live) + len(written) > self._max_live:
                    # The publisher is far behind: stop feeding it from memory; these stay
                    # in the table and go out as backlog when it opens live again.
                    self._live_open = False
                    self._live_overflow = True
                    self._live.clear()
                else:
                    self._live.extend(written)
        if self.config.on_full == "drop_oldest":
            self._drop_oldest(conn)
        if written:
            self._waker()
        if self.secondary is not None:
            self.secondary.committed(conn)

    def rolled_back(self, exc: BaseException) -> None:
        """The transaction failed: give the seqs back, keep the entries for the next one."""
        if self._written is not None:  # write() ran (or began) in this transaction
            self._next_seq = self._seq_before
        self._written = None
        self._plans_saving.clear()
        with self._lock:
            for kind, entries in self._taken_events.items():
                self._events[kind][:0] = entries
            self._errors += 1
            self._last_error = _error_text(exc)
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
                self._disk_full += 1
        self._taken_events = {}
        if self.secondary is not None:
            self.secondary.rolled_back(exc)

    def _drop_oldest(self, conn: sqlite3.Connection) -> None:
        cfg = self.config
        with self._lock:
            over_rows = self._rows - cfg.max_backlog_rows
            over_bytes = self._bytes - cfg.max_backlog_bytes
            if over_rows <= 0 and over_bytes <= 0:
                return
            # Under the lock: the consumer cannot claim a row between choosing and deleting.
            doomed: list[tuple[int, int, int]] = []
            skipped: list[int] = []
            after = -1
            while over_rows > 0 or over_bytes > 0:
                page = conn.execute(
                    self._sql(
                        f"SELECT seq, n, {_SIZE_SQL} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
                    ),
                    (after, _DROP_PAGE),
                ).fetchall()
                if not page:
                    break
                for seq, n, size in page:
                    after = seq
                    if seq in self._claimed:
                        skipped.append(seq)
                        continue
                    doomed.append((seq, n, size))
                    over_rows -= n
                    over_bytes -= size
                    if over_rows <= 0 and over_bytes <= 0:
                        break
            if not doomed:
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(self._sql(DELETE_MESSAGE), [(d[0],) for d in doomed])
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._errors += 1
                self._last_error = _error_text(exc)
                return
            top = doomed[-1][0]
            self._rows -= sum(d[1] for d in doomed)
            self._bytes -= sum(d[2] for d in doomed)
            self._messages -= len(doomed)
            self._dropped["backlog_full"] += sum(d[1] for d in doomed)
            self._full = True
            self._drop_floor = max(self._drop_floor, top + 1)
            self._survivors.update(s for s in skipped if s < top)
            if self._live and self._live[0].seq <= top:
                gone = {d[0] for d in doomed}
                self._live = deque(m for m in self._live if m.seq not in gone)
            self._oldest_t = None  # the publisher reads it again
        log.warning("uplink backlog over its bound: dropped the %d oldest messages", len(doomed))

    # ------------------------------------------------------------------ engine side

    def add_records(self, kind: str, records: Iterable[dict[str, Any]], t: float) -> None:
        """Queue alarm or audit records (plain JSON data) for the next historian commit."""
        if kind not in ("alarms", "audit"):
            raise ValueError(f"kind {kind!r} is not one of alarms, audit")
        records = list(records)  # a second outbox takes them too
        encoded = [(record_json(r), t) for r in records]
        with self._lock:
            self._events[kind].extend(encoded)
        if self.secondary is not None:
            self.secondary.add_records(kind, records, t)

    def set_waker(self, fn: Callable[[], None]) -> None:
        """Called (on the writer thread) after a commit that added messages."""
        self._waker = fn

    # ------------------------------------------------------------------ consumer side

    def open_reader(self) -> None:
        """The consumer's own connection (reads the backlog, deletes acknowledged rows)."""
        if self.path is None:
            raise RuntimeError("outbox not opened: start the historian that carries it first")
        if self._rconn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
            )
            # The historian's durability rule: a commit survives a killed process; a power cut
            # may undo the last deletes, which only means a message is sent twice.
            apply_pragmas(conn)
            # Debian builds SQLite with secure_delete on: every acknowledged row would be
            # overwritten with zeros. These are copies of the history, not secrets.
            conn.execute("PRAGMA secure_delete=FAST")
            self._rconn = conn

    def close_reader(self) -> None:
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None

    def open_live(self) -> int:
        """From now on, committed messages are handed over in memory; returns the first seq
        that will come that way (everything below it is backlog, in the table)."""
        with self._lock:
            self._live_open = True
            self._live_overflow = False
            self._live.clear()
            return self._committed_next

    def close_live(self) -> None:
        with self._lock:
            self._live_open = False
            self._live.clear()

    @property
    def live_overflowed(self) -> bool:
        return self._live_overflow

    def take_live(self, limit: int) -> list[OutboxMessage]:
        """Up to `limit` live messages, oldest first, claimed for sending."""
        out: list[OutboxMessage] = []
        with self._lock:
            live = self._live
            while live and len(out) < limit:
                m = live.popleft()
                self._claimed.add(m.seq)
                out.append(m)
        return out

    @property
    def live_waiting(self) -> int:
        return len(self._live)

    def read_backlog(
        self, after: int, below: int, limit: int
    ) -> tuple[list[OutboxMessage], int | None]:
        """Unclaimed messages with after < seq < below in seq order, and the last seq looked at
        (None when there was nothing in the range)."""
        conn = self._require_reader()
        rows = conn.execute(
            self._sql(
                "SELECT seq, kind, boot, t, n, body, spb FROM outbox WHERE seq > ? AND "
                "seq < ? ORDER BY seq LIMIT ?"
            ),
            (after, below, limit),
        ).fetchall()
        if not rows:
            return [], None
        with self._lock:
            claimed = self._claimed
            out = [OutboxMessage(*r) for r in rows if r[0] not in claimed]
        return out, rows[-1][0]

    def entries_of(self, m: OutboxMessage) -> list[dict[str, Any]]:
        """A message's entries as plain JSON data (consumer thread): its body parsed, or its
        other form read back with the plan it was made with."""
        if m.body or m.spb is None:
            out: list[dict[str, Any]] = json.loads(m.body)
            return out
        from floorconsole.adapters.sparkplug.rows import row_entries, row_fingerprint

        fp = row_fingerprint(m.spb)
        plan = self._plan(fp)
        try:
            entries = None if plan is None else row_entries(m.spb, plan)
        except Exception as exc:  # noqa: BLE001 - a damaged row must not stop the uplink
            entries = None
            log.warning("outbox message %d: its Sparkplug form is unreadable: %s", m.seq, exc)
        if entries is None:
            with self._lock:
                if m.seq not in self._unreadable:  # counted once, however often it is sent
                    self._unreadable.add(m.seq)
                    self._dropped["unreadable"] += m.n
                self._last_error = (
                    f"message {m.seq}: its {m.n} entries are stored in a Sparkplug form whose "
                    f"alias plan {fp.hex() if fp else '?'} is not in outbox_plans: not sent"
                )
            return []
        return entries

    def body_of(self, m: OutboxMessage) -> bytes:
        """A message's JSON body (consumer thread), made again from its other form when it is
        stored with that alone (the format went from sparkplug to json with rows waiting)."""
        if m.body or m.spb is None:
            return m.body
        encode = self._encoder.encode
        texts = []
        for e in self.entries_of(m):
            got = encode(Sample(e["s"], e["v"], Quality.GOOD, Reason.NONE, e["t"] / 1000.0, 0.0))
            if got is not None:
                texts.append(got[0])
        return ("[" + ",".join(texts) + "]").encode()

    def _plan(self, fingerprint: bytes | None) -> Any:
        """The RowPlan of a fingerprint: this process's encoder's, else outbox_plans'."""
        if fingerprint is None:
            return None
        plan = self._plans.get(fingerprint)
        if plan is None:
            plans = getattr(self.row_encoder, "plans", None)
            plan = plans.get(fingerprint) if plans else None
        if plan is None:
            from floorconsole.adapters.sparkplug.rows import plan_from_text

            row = (
                self._require_reader()
                .execute("SELECT plan FROM outbox_plans WHERE fingerprint = ?", (fingerprint,))
                .fetchone()
            )
            plan = None if row is None else plan_from_text(fingerprint, row[0])
        if plan is not None:
            self._plans[fingerprint] = plan
        return plan

    def claim(self, m: OutboxMessage) -> bool:
        """Mark a message read from the backlog as being sent; False if on_full dropped it."""
        with self._lock:
            if m.seq < self._drop_floor and m.seq not in self._survivors:
                return False
            self._claimed.add(m.seq)
            return True

    def release(self, seqs: Iterable[int]) -> None:
        """Sent but not acknowledged (the connection went): eligible for sending again."""
        with self._lock:
            self._claimed.difference_update(seqs)

    def delete_acked(self, messages: Sequence[OutboxMessage]) -> bool:
        """Delete acknowledged messages in one transaction. False (and counted) if the database
        refused; the caller keeps them and tries again."""
        conn = self._require_reader()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(self._sql(DELETE_MESSAGE), [(m.seq,) for m in messages])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            with self._lock:
                self._errors += 1
                self._last_error = _error_text(exc)
            return False
        seqs = [m.seq for m in messages]
        with self._lock:
            self._rows -= sum(m.n for m in messages)
            self._bytes -= sum(m.size for m in messages)
            self._messages -= len(messages)
            self._claimed.difference_update(seqs)
            self._survivors.difference_update(seqs)
            if self._unreadable:  # bounded by the rows still in the table
                self._unreadable.difference_update(seqs)
        return True

    def refresh_oldest(self) -> float | None:
        """Read the wall time of the oldest waiting entry (consumer thread)."""
        row = (
            self._require_reader()
            .execute(self._sql("SELECT t FROM outbox ORDER BY seq LIMIT 1"))
            .fetchone()
        )
        with self._lock:
            self._oldest_t = None if row is None else row[0]
        return self._oldest_t

    def _require_reader(self) -> sqlite3.Connection:
        if self._rconn is None:
            raise RuntimeError("outbox reader not open: call open_reader() first")
        return self._rconn

    # ------------------------------------------------------------------ figures

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def committed_next(self) -> int:
        return self._committed_next

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                rows=self._rows,
                bytes=self._bytes,
                messages=self._messages,
                next_seq=self._committed_next,
                full=self._full,
                dropped=tuple((r, self._dropped[r]) for r in DROP_REASONS),
                disk_full=self._disk_full,
                errors=self._errors,
                last_error=self._last_error,
                oldest_t=self._oldest_t,
            )
