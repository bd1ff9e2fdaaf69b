"""Every theme is readable: each text colour on each background it is drawn on has a contrast
ratio of at least 4.5:1 (WCAG 2.x AA), computed from the theme files and from the rendered
screen, also after a live theme switch (where a bar once kept the old theme's text colour)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.segment import Segment

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import FloorApp, make_app
from floorconsole.ui.themes import THEME_ORDER, THEMES_DIR, load_themes

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
AA = 4.5
TEXT = (
    "foreground",
    "quality-good",
    "quality-uncertain",
    "quality-bad",
    "stale",
    "muted",
    "trend",
    "alarm-critical",
    "alarm-high",
    "alarm-medium",
    "alarm-low",
    "banner-text",
)
BACKGROUNDS = ("background", "surface", "panel", "banner-normal", "selection")


def luminance(rgb: tuple[int, int, int]) -> float:
    def lin(c: int) -> float:
        x = c / 255
        return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def test_the_ratio_is_wcags() -> None:
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((0x77, 0x77, 0x77), (255, 255, 255)) == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize("name", THEME_ORDER)
def test_every_text_colour_on_every_background_of_the_theme_file(name: str) -> None:
    theme = load_themes(THEMES_DIR).themes[name]
    colours = {
        "foreground": theme.foreground,
        "background": theme.background,
        "surface": theme.surface,
        "panel": theme.panel,
        **theme.variables,
    }
    low = [
        f"{fg} {colours[fg]} on {bg} {colours[bg]}: {contrast(rgb(colours[fg]), rgb(colours[bg])):.2f}"
        for fg in TEXT
        for bg in BACKGROUNDS
        if contrast(rgb(colours[fg]), rgb(colours[bg])) < AA  # type: ignore[arg-type]
    ]
    # The engine line when the engine is gone: the background colour on quality-bad.
    gone = contrast(rgb(colours["background"]), rgb(colours["quality-bad"]))  # type: ignore[arg-type]
    if gone < AA:
        low.append(f"background on quality-bad: {gone:.2f}")
    assert not low, f"{name}: below {AA}:1:\n" + "\n".join(low)


def screen_pairs(app: FloorApp) -> list[tuple[str, float]]:
    """(text, ratio) of every visible piece of text on the screen as rendered now."""
    out = []
    for strip in app.screen._compositor.render_strips():
        for seg in strip:
            if not isinstance(seg, Segment) or not seg.text.strip() or seg.style is None:
                continue
            if all("\u2500" <= ch <= "\u257f" for ch in seg.text.strip()):
                continue  # box drawing: borders and rules between panels, not text
            st = seg.style
            if st.color is None or st.bgcolor is None:
                continue
            fg = st.color.get_truecolor()
            bg = st.bgcolor.get_truecolor()
            if st.reverse:
                fg, bg = bg, fg
            out.append((seg.text.strip(), contrast(tuple(fg), tuple(bg))))  # type: ignore[arg-type]
    return out


async def check_screen(app: FloorApp, pilot: object, where: str) -> None:
    await pilot.pause()  # type: ignore[attr-defined]
    app.tick()
    await pilot.pause()  # type: ignore[attr-defined]
    pairs = screen_pairs(app)
    assert len(pairs) > 30, where
    low = sorted({(t[:30], round(r, 2)) for t, r in pairs if r < AA}, key=lambda x: x[1])
    assert not low, f"{where} ({app.theme}): text below {AA}:1: {low[:12]}"


@pytest.mark.parametrize("recording", ["device_down.json", "overview.json"])
async def test_the_rendered_screen_after_each_live_theme_switch(recording: str) -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / recording))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for _ in THEME_ORDER:  # isa101, then t to each of the others, live
            await check_screen(app, pilot, "overview")
            await pilot.press("t")
        assert app.theme == THEME_ORDER[0]
        await pilot.press("f2")
        for _ in THEME_ORDER:
            await check_screen(app, pilot, "alarms")
            await pilot.press("t")
