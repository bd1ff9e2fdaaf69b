"""What the console's terminal already shows, so that a frame sends only the cells that changed.

Textual repaints a widget's line whole whenever anything on it changes: its compositor sends
every cell of every dirty line, each segment as its full style, its text and a reset. An Age
column that moves every tick thus rewrote every row of the table every frame: 25 kB/s at 80x24
and 4 Hz, two thirds of it style codes. A console over SSH or a cellular modem pays for every
byte. ScreenDiff stands between Textual and the terminal: it keeps a copy of the cells the
terminal shows (text and style), reads each of Textual's writes as cell updates, and sends
only the runs of cells that differ, each style as a change from the one before and each
cursor move in its shortest form.

Only what Textual's compositor writes is read: cursor moves, SGR styles, text, CR/LF, and
modes that touch no cell (cursor shown, mouse, synchronized output, queries). A write holding
anything else (clearing, the alternate screen, hyperlinks, a control character) goes out as
Textual wrote it and the copy is forgotten: the next frames send in full what they touch, so
the terminal never shows a cell the copy does not know. After every write the terminal holds
the cells Textual's own write would have left, and its cursor where Textual put it whenever
the cursor is shown.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rich.cells import get_character_cell_size

_TOKEN = re.compile(
    # A segment as Textual writes one, style, text and reset, read as one token: a third of
    # the work of reading the three apart.
    r"(?P<seg>\x1b\[(?P<segsgr>[0-9;]+)m(?P<segtext>[^\x00-\x1f\x7f-\x9f\x1b]+)\x1b\[0?m)"
    r"|(?P<cup>\x1b\[(?P<row>\d*)(?:;(?P<col>\d*))?H)"
    r"|(?P<sgr>\x1b\[(?P<params>[0-9;:]*)m)"
    r"|(?P<csi>\x1b\[[0-9;:<=>?]*[ -/]*[@-~])"
    r"|(?P<osc>\x1b\][^\x07\x1b]*(?:\x07|\x1b\\))"
    r"|(?P<ctl>[\x00-\x1f\x7f-\x9f])"
    r"|(?P<text>[^\x00-\x1f\x7f-\x9f]+)"
)
# Private modes that change no cell, cursor position or style: mouse and focus reporting,
# bracketed paste, synchronized output, in-band resize reports, the cursor's blink.
_HARMLESS_MODES = frozenset(
    {"12", "1000", "1002", "1003", "1004", "1005", "1006", "1015", "1016", "2004", "2026"}
    | {"2048"}
)
SHOW_CURSOR, HIDE_CURSOR = "\x1b[?25h", "\x1b[?25l"
# Mode queries, the keyboard protocol, device attributes, the cursor's shape.
_HARMLESS_CSI = re.compile(r"\x1b\[(?:[?]?[0-9;]*\$p|[<=>?]?[0-9;]*u|[>?]?[0-9;]*c|\d* q)")
_HARMLESS_OSC = re.compile(r"\x1b\](?:0|1|2|10|11|12|22);")  # titles, colour queries, pointer

MAX_CELLS = 1000  # a cursor move beyond this many rows or columns is not a screen we copy
GAP_BYTES = 4  # unchanged cells between two changed runs are re-sent when they cost no more


class ScreenDiff:
    """The copy of the terminal's cells, and the function that turns a write into its diff.

    One writer calls it (the app's loop); `resize` may be called from the same thread before a
    write, with the terminal's size, which forgets the copy when the size changed."""

    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width, self.height = width, height  # 0: unknown (no relative cursor moves)
        self._rows: dict[int, _Row] = {}
        self._sgr: str | None = None  # the terminal's style; None: unknown (at first too)
        self._pos: tuple[int, int] | None = None  # the terminal's cursor (x, y); None: unknown
        self._want_sgr = ""  # Textual's idea of the style...
        self._want_pos: tuple[int, int] | None = None  # ...and of the cursor
        self._shown = True  # the cursor is visible: it must be where Textual put it
        self.bytes_in = 0  # what Textual wrote (characters)
        self.bytes_out = 0  # what the terminal got (characters)
        self.passed = 0  # writes sent as written, not understood

    def resize(self, width: int, height: int) -> None:
        """The terminal's size; a new one forgets the copy (the terminal may have reflowed)."""
        if (width, height) != (self.width, self.height):
            self.width, self.height = width, height
            self.forget()

    def forget(self) -> None:
        """Nothing is known of the terminal's cells, cursor or style from now on."""
        self._rows.clear()
        self._sgr = self._pos = None

    def __call__(self, data: str) -> str:
        """What to send for Textual's write `data`: the terminal ends as `data` would leave it."""
        self.bytes_in += len(data)
        out = self._diff(data)
        if out is None:  # not a frame we read: as written, after our own cursor and style
            self.passed += 1
            lead = self._sync_sgr(self._want_sgr)
            if self._want_pos is not None and self._pos != self._want_pos:
                lead += _cup(*self._want_pos)
            out = lead + data
            self.forget()
            self._want_sgr, self._want_pos = "", None
        self.bytes_out += len(out)
        return out

    # -- reading Textual's write ----------------------------------------------------------

    def _diff(self, data: str) -> str | None:
        pending: dict[int, _Row] = {}  # the cells this write puts on each row; the last wins
        out: list[str] = []
        pos, sgr = self._want_pos, self._want_sgr
        x, y = pos if pos is not None else (-1, -1)
        end = 0
        for m in _TOKEN.finditer(data):
            if m.start() != end:  # something no token reads, such as a cut escape sequence
                return None
            end = m.end()
            kind = m.lastgroup
            if kind == "seg" or kind == "text":
                if y < 0:
                    return None
                row = pending.get(y)
                if row is None:
                    row = pending[y] = _Row()
                if kind == "seg":
                    params = m.group("segsgr")
                    style = _after(sgr, params)
                    x = row.put(x, m.group("segtext"), style)
                    sgr = ""  # the reset that ends the segment
                else:
                    x = row.put(x, m.group(), sgr)
                if x < 0 or x > MAX_CELLS or (self.width and x > self.width):
                    return None  # past the edge: the terminal's wrap is not ours to guess
            elif kind == "cup":
                y = int(m.group("row") or 1) - 1
                x = int(m.group("col") or 1) - 1
                if y >= MAX_CELLS or x >= MAX_CELLS:
                    return None
            elif kind == "sgr":
                sgr = _after(sgr, m.group("params"))
            elif kind == "ctl":
                tok = m.group()
                if tok == "\r" and y >= 0:
                    x = 0
                elif tok == "\n" and y >= 0 and (not self.height or y + 1 < self.height):
                    x, y = 0, y + 1  # the tty's onlcr makes it CR LF; never a scroll here
                elif tok == "\x07":  # the bell
                    out.append(self._flush(pending))
                    out.append(tok)
                else:
                    return None
            elif _harmless(kind, m.group()):
                out.append(self._flush(pending))
                tok = m.group()
                if tok == SHOW_CURSOR and y >= 0:
                    out.append(self._move(x, y))
                if tok in (SHOW_CURSOR, HIDE_CURSOR):
                    self._shown = tok == SHOW_CURSOR
                out.append(tok)
            else:
                return None
        if end != len(data):
            return None
        out.append(self._flush(pending))
        self._want_sgr = sgr
        self._want_pos = (x, y) if y >= 0 else None
        if self._shown and y >= 0:
            out.append(self._move(x, y))
        return "".join(out)

    # -- writing what changed -------------------------------------------------------------

    def _flush(self, pending: dict[int, _Row]) -> str:
        """The runs of changed cells, row by row; the copy brought up to date."""
        if not pending:
            return ""
        out: list[str] = []
        for y in sorted(pending):
            new = pending[y]
            old = self._rows.get(y)
            if old is None:
                old = self._rows[y] = _Row()
            old.grow(len(new.text))
            ot, os_, nt, ns = old.text, old.style, new.text, new.style
            for a, b in new.spans():
                if ot[a:b] == nt[a:b] and os_[a:b] == ns[a:b]:
                    continue  # the usual case for most of a line: compared in C
                runs: list[list[int]] = []
                for x in range(a, b):
                    if ot[x] == nt[x] and os_[x] == ns[x]:
                        continue
                    if runs and _gap_is_cheap(nt, ns, runs[-1][1], x):
                        runs[-1][1] = x + 1
                    else:
                        runs.append([x, x + 1])
                for x0, x1 in runs:
                    # A run never starts or ends inside a wide character.
                    while x0 > a and nt[x0] == "":
                        x0 -= 1
                    while x1 < b and nt[x1] == "":
                        x1 += 1
                    out.append(self._move(x0, y))
                    for x in range(x0, x1):
                        text = nt[x]
                        if text:
                            out.append(self._sync_sgr(ns[x] or ""))
                            out.append(text)
                    # At the right edge the cursor is stuck or waits to wrap: terminals differ.
                    self._pos = (x1, y) if self.width and x1 < self.width else None
                ot[a:b] = nt[a:b]
                os_[a:b] = ns[a:b]
        pending.clear()
        return "".join(out)

    def _sync_sgr(self, style: str) -> str:
        if style == self._sgr:
            return ""
        change = _switch(self._sgr, style)
        self._sgr = style
        return f"\x1b[{change}m" if change else ""  # "": the same style, written otherwise

    def _move(self, x: int, y: int) -> str:
        """The shortest sequence that takes the cursor to (x, y) from where it is."""
        here = self._pos
        self._pos = (x, y)
        if here == (x, y):
            return ""
        best = _cup(x, y)
        if here is None:
            return best
        hx, hy = here
        dy = y - hy
        vertical = "" if dy == 0 else _csi(dy, "B") if dy > 0 else _csi(-dy, "A")
        for horizontal in (_horizontal(x - hx), "\r" + _horizontal(x)):
            if len(vertical) + len(horizontal) < len(best):
                best = vertical + horizontal
        return best


class _Row:
    """The cells of one line as two lists (text, SGR; None where unknown or unwritten), and
    the spans a write covered."""

    __slots__ = ("text", "style", "_spans")

    def __init__(self) -> None:
        self.text: list[str | None] = []
        self.style: list[str | None] = []
        self._spans: list[tuple[int, int]] = []

    def grow(self, n: int) -> None:
        if len(self.text) < n:
            more = n - len(self.text)
            self.text.extend([None] * more)
            self.style.extend([None] * more)

    def put(self, x: int, text: str, sgr: str) -> int:
        """Write text from column x in style sgr; the column after it (-1: not writable)."""
        if text.isascii() or all(_width(ch) == 1 for ch in text):
            n = len(text)
            self.grow(x + n)
            self.text[x : x + n] = text  # one cell per character, at C speed
            self.style[x : x + n] = [sgr] * n
            self._spans.append((x, x + n))
            return x + n
        start = x
        for ch in text:
            w = _width(ch)
            if w == 0:  # a combining mark joins the cell before it
                before = self.text[x - 1] if 0 < x <= len(self.text) else None
                if not before:
                    return -1
                self.text[x - 1] = before + ch
                continue
            self.grow(x + w)
            self.text[x] = ch
            self.style[x] = sgr
            if w == 2:  # a wide character: its second cell holds nothing of its own
                self.text[x + 1] = ""
                self.style[x + 1] = sgr
            x += w
        self._spans.append((start, x))
        return x

    def spans(self) -> list[tuple[int, int]]:
        """The columns written, as sorted spans that do not overlap."""
        merged: list[tuple[int, int]] = []
        for a, b in sorted(self._spans):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            elif a < b:
                merged.append((a, b))
        return merged


_WIDTHS: dict[str, int] = {}


def _width(ch: str) -> int:
    w = _WIDTHS.get(ch)
    if w is None:
        w = get_character_cell_size(ch)
        if len(_WIDTHS) < 4096:  # bounded: a screen of rare characters asks every time
            _WIDTHS[ch] = w
    return w


def _gap_is_cheap(text: list[str | None], style: list[str | None], start: int, stop: int) -> bool:
    """Whether re-sending the unchanged cells start..stop costs no more than moving over them
    (a cursor move is 3-4 bytes): they are in this write and in the style before them."""
    if stop - start > GAP_BYTES:
        return False
    before = style[start - 1]
    cost = 0
    for x in range(start, stop):
        t = text[x]
        if t is None or style[x] != before:
            return False
        cost += len(t.encode())
    return cost <= GAP_BYTES


def _after(sgr: str, params: str) -> str:
    """The style after SGR `params` applied to style `sgr` (both as parameters from a reset)."""
    if params in ("", "0"):
        return ""
    if params.startswith("0;"):
        return params[2:]
    return f"{sgr};{params}" if sgr else params


def _cup(x: int, y: int) -> str:
    if x:
        return f"\x1b[{y + 1};{x + 1}H"
    return f"\x1b[{y + 1}H" if y else "\x1b[H"


def _csi(n: int, final: str) -> str:
    return f"\x1b[{final}" if n == 1 else f"\x1b[{n}{final}"


def _horizontal(dx: int) -> str:
    if dx == 0:
        return ""
    if dx > 0:
        return _csi(dx, "C")
    return "\b" * -dx if -dx <= 3 else _csi(-dx, "D")


def _harmless(kind: str | None, tok: str) -> bool:
    """Sequences that leave every cell, the cursor's place and the style as they were."""
    if kind == "osc":
        return _HARMLESS_OSC.match(tok) is not None
    if kind != "csi":
        return False
    if tok in (SHOW_CURSOR, HIDE_CURSOR):
        return True
    if tok.startswith("\x1b[?") and tok[-1] in "hl":
        return all(p in _HARMLESS_MODES for p in tok[3:-1].split(";"))
    return _HARMLESS_CSI.fullmatch(tok) is not None


# -- styles as changes from the last one ---------------------------------------------------

# SGR attributes and the code that turns each off.
_ATTR_OFF = {"1": "22", "2": "22", "3": "23", "4": "24", "5": "25", "7": "27", "8": "28", "9": "29"}


@lru_cache(maxsize=1024)
def _parse(sgr: str) -> tuple[frozenset[str], str, str] | None:
    """(attributes, foreground, background) of SGR parameters applied after a reset; None when
    they hold anything not modelled here (the switch then resets and sets the whole style)."""
    attrs: set[str] = set()
    fg = bg = ""
    ps = sgr.split(";") if sgr else []
    i = 0
    while i < len(ps):
        p = ps[i]
        if p in ("", "0"):
            attrs.clear()
            fg = bg = ""
        elif p in _ATTR_OFF:
            attrs.add(p)
        elif p in ("38", "48"):
            mode = ps[i + 1] if i + 1 < len(ps) else ""
            n = 3 if mode == "5" else 5 if mode == "2" else 0
            if not n or i + n > len(ps):
                return None
            color = ";".join(ps[i : i + n])
            fg, bg = (color, bg) if p == "38" else (fg, color)
            i += n
            continue
        elif p.isdigit() and (30 <= int(p) <= 37 or 90 <= int(p) <= 97):
            fg = p
        elif p.isdigit() and (40 <= int(p) <= 47 or 100 <= int(p) <= 107):
            bg = p
        elif p == "39":
            fg = ""
        elif p == "49":
            bg = ""
        else:
            return None
        i += 1
    return frozenset(attrs), fg, bg


@lru_cache(maxsize=4096)
def _switch(old: str | None, new: str) -> str:
    """SGR parameters that take the terminal from style `old` (None: unknown) to `new`: the
    change alone when that is shorter than a reset and the whole style."""
    whole = f"0;{new}" if new else "0"
    a = _parse(old) if old is not None else None
    b = _parse(new)
    if a is None or b is None:
        return whole
    (attrs_a, fg_a, bg_a), (attrs_b, fg_b, bg_b) = a, b
    off = attrs_a - attrs_b
    if "22" in {_ATTR_OFF[p] for p in off} and attrs_b & {"1", "2"}:
        return whole  # 22 turns bold and faint off together
    change = sorted({_ATTR_OFF[p] for p in off}) + sorted(attrs_b - attrs_a)
    if fg_a != fg_b:
        change.append(fg_b or "39")
    if bg_a != bg_b:
        change.append(bg_b or "49")
    delta = ";".join(change)
    return delta if len(delta) < len(whole) else whole
