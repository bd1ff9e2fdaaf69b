"""What the app asks of the screen on top, and how a screen reaches the console's engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

from floorconsole.console import ConsoleAPI, Frame

if TYPE_CHECKING:
    from floorconsole.ui.app import FloorApp


class ShowsFrames:
    """A screen (or dialog) that draws every frame: the app's tick hands it each frame once
    it is mounted. Screens without it (help, login) are left alone by the tick."""

    def show_frame(self, frame: Frame) -> None:
        raise NotImplementedError(f"{type(self).__name__} shows frames but has no show_frame")


def console_app(node: DOMNode) -> FloorApp:
    """The console `node` belongs to: every screen of ours runs in a FloorApp."""
    return cast("FloorApp", node.app)


def console_api(node: DOMNode) -> ConsoleAPI:
    """The engine API of the console `node` belongs to."""
    return console_app(node).api
