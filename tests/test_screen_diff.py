"""The console sends its terminal only the cells that changed (issue 19), and the terminal shows
exactly what Textual's own output would have shown: checked with pyte, an independent terminal
emulator, fed Textual-shaped writes and their diffs side by side, cell for cell, style for
style, cursor for cursor."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pyte
import pytest

from floorconsole.ui.screen_diff import ScreenDiff

W, H = 40, 12
STYLES = [
    "",
    "38;5;234;48;5;253",
    "38;5;238;48;5;253",
    "1;38;5;58;48;5;253",
    "3;38;5;239;48;5;253",
    "9;38;5;239;48;5;253",
    "7;38;5;246;48;5;250",
    "1;7;38;2;200;10;10;48;2;0;0;0",
    "2;31;44",
    "4;92",
    "38;5;234;48;5;152",
]
CHARS = "abcxyz0189 .:●◆✕▁▄█…│"


class Terminal:
    """A pyte screen fed the bytes a terminal gets (LF as the tty's onlcr sends it)."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(W, H)
        self.stream = pyte.Stream(self.screen)

    def feed(self, data: str) -> None:
        self.stream.feed(data.replace("\n", "\r\n"))

    def state(self) -> tuple[object, ...]:
        s = self.screen
        cells = tuple(
            (c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.strikethrough, c.reverse)
            for y in range(H)
            for c in (s.buffer[y][x] for x in range(W))
        )
        return cells, None if s.cursor.hidden else (s.cursor.x, s.cursor.y)


def segment(text: str, style: str) -> str:
    """One segment as Textual's Strip.render writes it: its whole style, its text, a reset."""
    return f"\x1b[{style}m{text}\x1b[0m" if style else text


def frames(rng: random.Random, wide: bool) -> Iterator[str]:
    """Textual-shaped writes: lines (or chops of lines) repainted whole, segment by segment,
    with the cursor put back at the end; now and then a mode, the bell, or a full clear."""
    # A cell's text: one character, a wide one (two cells), or a letter and its combining mark.
    chars = list(CHARS) + (["漢", "字", "e\u0301"] if wide else [])
    lines = [[(" ", "")] * W for _ in range(H)]
    cursor = (0, 0)
    for n in range(300):
        if n % 97 == 96:  # something not read: the copy must be forgotten, nothing lost
            yield "\x1b[2J"
            dirty = list(range(H))
        else:
            dirty = rng.sample(range(H), rng.randint(0, 4)) if n else list(range(H))
        out = []
        for y in sorted(dirty):
            line = lines[y]
            for _ in range(rng.randint(1, 6)):  # a few cells change, in text or in style
                x = rng.randrange(W)
                line[x] = (rng.choice(chars), rng.choice(STYLES))
            x0 = rng.choice((0, 0, rng.randrange(W)))
            out.append(f"\x1b[{y + 1};{x0 + 1}H")
            x, segs = x0, []
            while x < W:
                ch, style = line[x]
                if ch in "漢字" and x + 1 >= W:
                    ch = "z"  # a wide character never hangs over the edge
                    line[x] = (ch, style)
                if segs and segs[-1][1] == style and rng.random() < 0.7:
                    segs[-1][0] += ch
                else:
                    segs.append([ch, style])
                if ch in "漢字":
                    line[x + 1] = ("", style)
                    x += 1
                x += 1
            out.extend(segment(t, s) for t, s in segs)
            if y + 1 in dirty:
                out.append("\n")
        if rng.random() < 0.3:
            cursor = (rng.randrange(W), rng.randrange(H))
        out.append(f"\x1b[{cursor[1] + 1};{cursor[0] + 1}H")
        yield "".join(out)
        if rng.random() < 0.05:
            yield rng.choice(("\x1b[?25h", "\x1b[?25l", "\x07", "\x1b[?1000h", "\x1b[?2026h"))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide-and-combining"])
def test_the_terminal_shows_what_textual_wrote_after_every_write(seed: int, wide: bool) -> None:
    textual, diffed = Terminal(), Terminal()
    diff = ScreenDiff(W, H)
    for n, data in enumerate(frames(random.Random(seed), wide)):
        textual.feed(data)
        diffed.feed(diff(data))
        assert diffed.state() == textual.state(), f"write {n}: {data!r}"
    assert diff.passed >= 3  # the clears went out as written
    assert diff.bytes_out < diff.bytes_in / 2


def test_one_changed_character_costs_a_move_and_the_character() -> None:
    diff = ScreenDiff(W, H)
    row = segment(" motor1.current ", STYLES[1]) + segment(" 15.30 A ", STYLES[1])
    diff(f"\x1b[5;1H{row}\x1b[1;1H")
    again = row.replace("15.30", "15.31")
    out = diff(f"\x1b[5;1H{again}\x1b[1;1H")
    # The cursor is shown: it goes back where Textual put it. The style is the one on screen.
    assert out == "\x1b[5;22H1\x1b[H"
    assert diff(f"\x1b[5;1H{again}\x1b[1;1H") == ""  # nothing changed: nothing sent


def test_styles_go_out_as_changes_and_the_copy_follows_a_resize() -> None:
    diff = ScreenDiff(W, H)
    diff("\x1b[?25l")
    first = diff(f"\x1b[1;1H{segment('ab', STYLES[1])}{segment('cd', STYLES[2])}")
    assert first == "\x1b[H\x1b[0;38;5;234;48;5;253mab\x1b[38;5;238mcd"  # the second: fg only
    assert diff(f"\x1b[1;1H{segment('ab', STYLES[1])}{segment('cd', STYLES[2])}") == ""
    diff.resize(W + 1, H)  # a new size: what the terminal shows is no longer known
    assert "ab" in diff(f"\x1b[1;1H{segment('ab', STYLES[1])}")


def test_a_write_it_cannot_read_goes_out_as_written() -> None:
    diff = ScreenDiff(W, H)
    diff(f"\x1b[1;1H{segment('abc', STYLES[1])}")
    for odd in (
        "\x1b[?1049h\x1b[2J",
        "\x1b[1;1Ha\tb",
        "\x1b]8;;http://x\x1b\\a\x1b]8;;\x1b\\",
        "\x1b[",
    ):
        out = diff(odd)
        assert out.endswith(odd), odd
    # What it wrote before is forgotten: the same cells are sent again, whole.
    assert "abc" in diff(f"\x1b[1;1H{segment('abc', STYLES[1])}")
