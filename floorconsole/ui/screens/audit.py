"""The audit screen: the engine's hash-chained audit trail, filtered by time window, kind,
user and free text, with the full record of a row on Enter and a chain check on v."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from floorconsole.engine.frames import Frame
from floorconsole.ui.format import local
from floorconsole.ui.widgets.search_box import SearchBoxMixin
from floorconsole.ui.widgets.status_bars import Bar

# Asked again this often while the screen is on top: the trail grows slowly, and each ask
# may cross a socket to the engine.
REFRESH_S = 2.0
LIMIT = 500
WINDOWS: tuple[tuple[str, float | None], ...] = (
    ("1 h", 3600.0),
    ("24 h", 86400.0),
    ("7 d", 7 * 86400.0),
    ("all", None),
)
DEFAULT_WINDOW = 1  # 24 h
KINDS = (
    "login",
    "login_failed",
    "user_locked",
    "logout",
    "alarm_ack",
    "alarm_shelve",
    "alarm_unshelve",
    "write",
    "rule_change",
    "rule_reset",
    "snapshot_apply",
    "snapshot_rollback",
    "model_change",
    "user_change",
    "kiosk",
    "system",
)
# Kinds an operator should notice when scanning: shown bold in the theme's warning colour,
# and their name already says what happened (never colour alone).
NOTABLE_KINDS = frozenset({"login_failed", "user_locked", "snapshot_rollback"})
NO_TRAIL = "no audit trail in this view"
WIDE_MIN = 96  # from this width the target has a column of its own


def is_secret(key: str) -> bool:
    """A detail key whose value never reaches the screen: PINs, their hashes, passwords."""
    k = key.lower()
    return "pin" in k.replace("-", "_").split("_") or any(
        w in k for w in ("pin_hash", "password", "secret", "token")
    )


def redact(value: Any) -> Any:
    """The value with every secret key dropped, at any depth."""
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items() if not is_secret(str(k))}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Mapping | list | tuple):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(v)


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d and d[k] not in (None, ""):
            return d[k]
    return None


def summarize(kind: str, detail: Mapping[str, Any]) -> str:
    """One line that says what the record is about: a write's before → after, a change's
    message, a failed login's reason; otherwise its fields as key=value."""
    d = redact(detail) if isinstance(detail, Mapping) else {}
    change: list[str] = []
    before = _first(d, "before", "old", "from", "previous")
    after = _first(d, "after", "new", "to", "value")
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        # Two versions of a thing (a rule, a user): only what differs between them.
        for k in [*before, *(k for k in after if k not in before)]:
            if before.get(k) != after.get(k):
                change.append(f"{k} {_short(before.get(k, '–'))} → {_short(after.get(k, '–'))}")
    elif before is not None and after is not None:
        change.append(f"{_short(before)} → {_short(after)}")
    elif after is not None and kind == "write":
        change.append(f"→ {_short(after)}")
    words = _first(d, "message", "reason", "why", "text", "note")
    said = [_short(words)] if words is not None else []
    # A write is about its values; anything else is best told by the words given with it.
    parts = change + said if kind == "write" else said + change
    seconds = _first(d, "duration_s", "for_s")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        parts.append(f"for {_duration(float(seconds))}")
    if d.get("ok") is False and words is None:
        parts.append("FAILED")
    if not parts:
        parts = [f"{k}={_short(v)}" for k, v in d.items()]
    return " ".join(" ".join(parts).split())  # one line, whatever the detail held


def _duration(s: float) -> str:
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g} h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g} min"
    return f"{s:g} s"


def when(t: float, now: float) -> str:
    """Local HH:MM:SS; with the month and day in front when not today, and the year (but
    no seconds, to stay narrow) when not this year."""
    lt = local(t)
    today = local(now)
    if today.date() == lt.date():
        return lt.strftime("%H:%M:%S")
    if today.year == lt.year:
        return lt.strftime("%m-%d %H:%M:%S")
    return lt.strftime("%Y-%m-%d %H:%M")


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class AuditRecordDialog(ModalScreen[None]):
    """One audit record in full, as pretty JSON (secrets dropped)."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close", key_display="Esc")]
    DEFAULT_CSS = """
    AuditRecordDialog { align: center middle; }
    AuditRecordDialog > Vertical { width: 90%; max-width: 96; height: auto; max-height: 90%;
                                   border: round $primary; background: $surface;
                                   padding: 0 1; }
    AuditRecordDialog VerticalScroll { height: auto; max-height: 18; }
    AuditRecordDialog #hint { color: $muted; }
    """

    def __init__(self, record: Mapping[str, Any]) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        r = self.record
        stamp = local(float(r.get("t_wall") or 0)).strftime("%Y-%m-%d %H:%M:%S %Z")
        title = f"#{r.get('seq', '?')} · {stamp} · {r.get('user', '')} · {r.get('kind', '')}"
        body = json.dumps(
            redact(dict(r)), indent=2, ensure_ascii=False, sort_keys=False, default=str
        )
        with Vertical():
            yield Static(Text(title, style="bold"), id="title")
            with VerticalScroll():
                yield Static(Text(body), id="body")
            yield Static("Esc or Enter closes", id="hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)


class AuditScreen(SearchBoxMixin, Screen[None]):
    """Who did what, when, newest first; the engine filters, the screen shows."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="Esc"),
        Binding("f6", "app.pop_screen", "Close", show=False),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("k", "cycle_kind", "Kind"),
        Binding("u", "cycle_user", "User"),
        Binding("w", "cycle_window", "Window"),
        Binding("r", "reload", "Refresh"),
        Binding("v", "verify", "Verify"),
    ]

    DEFAULT_CSS = """
    AuditScreen #summary { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    AuditScreen #filters { height: 1; color: $muted; padding: 0 1; }
    AuditScreen #search { display: none; height: 3; }
    AuditScreen #search.open { display: block; }
    AuditScreen #note { height: auto; color: $muted; padding: 0 1; display: none; }
    AuditScreen #note.shown { display: block; }
    AuditScreen DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.window = DEFAULT_WINDOW
        self.kind: str | None = None
        self.user: str | None = None
        self.text = ""
        self.records: list[dict[str, Any]] = []
        self.kinds_seen: set[str] = set()
        self.users_seen: set[str] = set()
        self.verdict: dict[str, Any] | None = None
        self.unavailable: str | None = None
        self._asked = float("-inf")
        self._generation = 0
        self._layout: tuple[int, ...] | None = None
        self._widths: dict[str, int] = {}
        self._theme = ""
        self._now = time.time()

    def compose(self) -> ComposeResult:
        yield Bar("audit trail", id="summary")
        # Disabled until opened, so a hidden box never takes the keys typed.
        yield Input(
            placeholder="text in user, kind, target or detail (Enter keeps, Esc clears)",
            id="search",
            disabled=True,
        )
        yield Bar("", id="filters")
        yield Static("", id="note")
        table: DataTable[Text | str] = DataTable(cursor_type="row", zebra_stripes=False)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._show_filters()
        self.load()

    # -- data -------------------------------------------------------------------------------

    def now(self) -> float:
        """The engine's wall clock as of the last frame (frozen in recordings), else ours."""
        frame: Frame | None = getattr(self.app, "last_frame", None)
        return frame.t_wall if frame is not None else time.time()

    def audit_query(self) -> dict[str, Any]:
        """The filters as keyword arguments of EngineAPI.audit()."""
        seconds = WINDOWS[self.window][1]
        now = self.now()
        return {
            "since": None if seconds is None else now - seconds,
            "until": None,
            "user": self.user,
            "kind": self.kind,
            "text": self.text.strip() or None,
            "limit": LIMIT,
        }

    def show_frame(self, frame: Frame) -> None:
        # Frames come at the app's tick rate; the trail is asked for only every REFRESH_S.
        if time.monotonic() - self._asked >= REFRESH_S:
            self.load()

    def load(self) -> None:
        self._asked = time.monotonic()
        self._generation += 1
        self._now = self.now()
        self._fetch(self._generation, self.audit_query())

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit")
    def _fetch(self, generation: int, query: dict[str, Any]) -> None:
        get = getattr(self.app.api, "audit", None)  # type: ignore[attr-defined]
        if get is None:
            self.app.call_from_thread(self._fill, generation, None, NO_TRAIL)
            return
        try:
            rows = list(get(**query))
        except Exception as e:  # an engine that cannot read its trail says why, once per ask
            self.app.call_from_thread(
                self._fill, generation, None, f"the audit trail could not be read: {e}"
            )
            return
        self.app.call_from_thread(self._fill, generation, rows, None)

    def _fill(
        self, generation: int, rows: list[dict[str, Any]] | None, problem: str | None
    ) -> None:
        if generation != self._generation or not self.is_mounted:
            return  # an older ask answered after a newer one was sent
        self.unavailable = problem
        rows = rows or []
        for r in rows:
            self.kinds_seen.add(str(r.get("kind", "")))
            self.users_seen.add(str(r.get("user", "")))
        table = self.query_one(DataTable)
        layout = self._layout_for(rows)
        # The trail only grows, so the same records in the same theme need no redraw.
        same = (
            layout == self._layout
            and self.app.theme == self._theme
            and [r.get("seq") for r in rows] == [r.get("seq") for r in self.records]
        )
        self._theme = self.app.theme
        self.records = rows
        if not same:
            self._build(table, layout, rows)
        self._show_summary()
        self._show_filters()

    def _layout_for(self, rows: list[dict[str, Any]]) -> tuple[int, ...]:
        """Column widths that fit what is shown: (screen width, time, user, kind)."""
        return (
            self.size.width,
            max([8, *(len(when(float(r.get("t_wall") or 0), self._now)) for r in rows)]),
            min(12, max([4, *(len(str(r.get("user", ""))) for r in rows)])),
            max([4, *(len(str(r.get("kind", ""))) for r in rows)]),
        )

    def _build(
        self, table: DataTable[Text | str], layout: tuple[int, ...], rows: list[dict[str, Any]]
    ) -> None:
        width, time_w, user_w, kind_w = layout
        wide = width >= WIDE_MIN
        cursor = table.cursor_row
        if layout != self._layout:
            table.clear(columns=True)
            # Each column takes its width plus one cell of padding either side; keep room
            # for the scroll bar so the table never scrolls sideways.
            used = time_w + user_w + kind_w + 3 * 2 + 2
            columns: tuple[tuple[str, str, int], ...]
            if wide:
                target_w = 16
                columns = (
                    ("time", "Time", time_w),
                    ("user", "User", user_w),
                    ("kind", "Kind", kind_w),
                    ("target", "Target", target_w),
                    ("what", "What", max(12, width - used - target_w - 2 - 2)),
                )
            else:
                columns = (
                    ("time", "Time", time_w),
                    ("user", "User", user_w),
                    ("kind", "Kind", kind_w),
                    ("what", "Target · what", max(12, width - used - 2)),
                )
            for key, label, w in columns:
                table.add_column(label, key=key, width=w)
            self._layout = layout
            self._widths = {key: w for key, _label, w in columns}
        else:
            table.clear()
        colors = self.app.theme_variables
        for r in rows:
            table.add_row(*self._cells(r, wide, colors))
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))

    def _cells(
        self, r: Mapping[str, Any], wide: bool, colors: Mapping[str, str]
    ) -> tuple[Text | str, ...]:
        kind = str(r.get("kind", ""))
        target = str(r.get("target", "") or "")
        what = summarize(kind, r.get("detail") or {})
        kind_cell: Text | str = kind
        if kind in NOTABLE_KINDS:
            kind_cell = Text(kind, style=f"bold {colors.get('alarm-medium', '')}".strip())
        w = self._widths
        cells: list[Text | str] = [
            when(float(r.get("t_wall") or 0), self._now),
            _fit(str(r.get("user", "")), w["user"]),
            kind_cell,
        ]
        if wide:
            cells += [_fit(target, w["target"]), _fit(what, w["what"])]
        else:
            joined = f"{target} · {what}" if target and what else target or what
            cells.append(_fit(joined, w["what"]))
        return tuple(cells)

    def on_resize(self) -> None:
        if self._layout is not None and self._layout[0] != self.size.width:
            self._build(self.query_one(DataTable), self._layout_for(self.records), self.records)

    # -- bars -------------------------------------------------------------------------------

    def _show_summary(self) -> None:
        colors = self.app.theme_variables
        line = Text("Audit trail", style="bold")
        if not self.unavailable:  # the note under the filters says why there is none
            n = len(self.records)
            line.append(f" · {n} record{'s' if n != 1 else ''}, newest first")
            if n >= LIMIT:
                line.append(f" (the newest {LIMIT}; narrow the filters)")
        v = self.verdict
        if v is not None:
            line.append(" · chain check: ")
            if v.get("ok"):
                line.append(f"✓ {v.get('message') or 'intact'}")
            else:
                line.append(
                    f"✕ BROKEN {v.get('message') or ''}".rstrip(),
                    style=f"bold {colors.get('alarm-high', '')}".strip(),
                )
        self.query_one("#summary", Bar).set_text(line)
        note = self.query_one("#note", Static)
        message = self.unavailable or (
            "" if self.records else "no audit records match these filters"
        )
        note.update(message)
        note.set_class(bool(message), "shown")

    def _show_filters(self) -> None:
        parts = [
            f"window {WINDOWS[self.window][0]}",
            f"kind {self.kind or 'all'}",
            f"user {self.user or 'all'}",
        ]
        if self.text.strip():
            parts.append(f"text {self.text.strip()!r}")
        self.query_one("#filters", Bar).set_text(" · ".join(parts))

    # -- actions ----------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.load()

    def action_cycle_window(self) -> None:
        self.window = (self.window + 1) % len(WINDOWS)
        self._changed()

    def action_cycle_kind(self) -> None:
        # The engine's kinds in their own order (logins together, alarms together), then any
        # kind this console does not know yet.
        known = [k for k in KINDS if k in self.kinds_seen]
        self.kind = _next(self.kind, known + sorted(self.kinds_seen - set(KINDS) - {""}))
        self._changed()

    def action_cycle_user(self) -> None:
        self.user = _next(self.user, sorted(u for u in self.users_seen if u))
        self._changed()

    def _changed(self) -> None:
        self._show_filters()
        self.load()

    def _search_changed_to(self, text: str) -> None:
        self.text = text
        self._changed()

    def _search_list(self) -> DataTable[Any]:
        return self.query_one(DataTable)

    def action_back(self) -> None:
        """Esc clears the text filter first; with none, it closes the screen."""
        box = self._search_box()
        if self.text or not box.disabled:
            box.value = ""
            self.text = ""
            self._close_search()
            self.query_one(DataTable).focus()
            self._changed()
            return
        self.app.pop_screen()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        row = event.cursor_row
        if 0 <= row < len(self.records):
            self.app.push_screen(AuditRecordDialog(self.records[row]))

    def action_verify(self) -> None:
        if getattr(self.app.api, "audit_verify", None) is None:  # type: ignore[attr-defined]
            self.notify("checking the chain needs a running engine", severity="warning")
            return
        self.notify("checking the audit chain…")
        self._verify()

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit-verify")
    def _verify(self) -> None:
        try:
            verdict = dict(self.app.api.audit_verify())  # type: ignore[attr-defined]
        except Exception as e:  # a check that could not run is a result too
            verdict = {"ok": False, "message": f"could not be checked: {e}"}
        self.app.call_from_thread(self._verified, verdict)

    def _verified(self, verdict: dict[str, Any]) -> None:
        self.verdict = verdict
        ok = bool(verdict.get("ok"))
        self.notify(
            str(verdict.get("message", "")) or ("chain intact" if ok else "chain broken"),
            severity="information" if ok else "error",
            timeout=8,
        )
        if self.is_mounted:
            self._show_summary()


def _next(current: str | None, choices: list[str]) -> str | None:
    """all → each choice in turn → all."""
    if not choices:
        return None
    if current is None or current not in choices:
        return choices[0] if current is None else None
    i = choices.index(current) + 1
    return choices[i] if i < len(choices) else None
