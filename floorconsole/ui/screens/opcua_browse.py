"""Browse an OPC UA device from the console, for an engineer adding a signal: the address
space under a node (NodeIds, types, current values) and the plant-file lines for its
variables; F8 adds those not in the plant yet, through config.apply (a snapshot, like any
change, with its health check and rollback)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Input, Static

from floorconsole.console import CommandError, Unavailable
from floorconsole.core.toml_write import dumps
from floorconsole.ui.live import console_api
from floorconsole.ui.screens.rule_editor import apply_config
from floorconsole.ui.widgets.footer import ConsoleFooter


def new_signals(plant: dict[str, Any], device: str, found: list[dict[str, Any]]) -> list[dict]:  # type: ignore[type-arg]
    """The browsed variables' [[signals]] tables the plant has not got (by device and node),
    each with an id no other signal has."""
    have = {
        (s.get("device"), s.get("node")) for s in plant.get("signals", []) if isinstance(s, dict)
    }
    ids = {s.get("id") for s in plant.get("signals", []) if isinstance(s, dict)}
    out = []
    for t in found:
        if (device, t.get("node")) in have:
            continue
        sid, k = str(t["id"]), 2
        while sid in ids:
            sid, k = f"{t['id']}_{k}", k + 1
        ids.add(sid)
        out.append({**t, "id": sid})
    return out


class OpcUaBrowseScreen(Screen[None]):
    """One OPC UA device's address space; Enter browses the NodeId typed, F8 adds."""

    BINDINGS = [
        Binding("f8", "add", "Add signals", key_display="F8"),
        Binding("escape", "app.pop_screen", "Back", key_display="Esc"),
    ]
    DEFAULT_CSS = """
    OpcUaBrowseScreen #ua-title { height: 1; padding: 0 1; text-style: bold; }
    OpcUaBrowseScreen #ua-node { margin: 0 1; }
    OpcUaBrowseScreen #ua-box { height: 1fr; }
    OpcUaBrowseScreen #ua-tree, OpcUaBrowseScreen #ua-lines { height: auto; padding: 0 1; }
    OpcUaBrowseScreen #ua-status { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Browse OPC UA device {self.device}", id="ua-title")
        yield Input(placeholder="NodeId to browse (empty: Objects), Enter", id="ua-node")
        with VerticalScroll(id="ua-box"):
            yield Static("", id="ua-status")
            yield Static("", id="ua-tree")
            yield Static("", id="ua-lines")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.browse("")

    @on(Input.Submitted, "#ua-node")
    def _submitted(self, event: Input.Submitted) -> None:
        self.browse(event.value.strip())

    def browse(self, node: str) -> None:
        self.query_one("#ua-status", Static).update(f"browsing {node or 'Objects'} …")
        self._fetch(node)

    @work(thread=True, exclusive=True, exit_on_error=False, group="opcua-browse")
    def _fetch(self, node: str) -> None:
        try:
            r = console_api(self).opcua_browse(self.device, node, 3)
        except (CommandError, Unavailable) as e:
            self.app.call_from_thread(self._show, None, str(e))
            return
        except Exception as e:  # a console attached over a socket can lose it
            self.app.call_from_thread(self._show, None, f"browse failed: {e}")
            return
        self.app.call_from_thread(self._show, r, "")

    def _show(self, r: dict[str, Any] | None, problem: str) -> None:
        self.result = r
        status = self.query_one("#ua-status", Static)
        tree = self.query_one("#ua-tree", Static)
        lines = self.query_one("#ua-lines", Static)
        if r is None:
            status.update(problem)
            tree.update("")
            lines.update("")
            return
        n = len(r.get("signals", []))
        status.update(
            f"{len(r.get('variables', []))} variable(s) under {r.get('node') or 'Objects'}; "
            f"F8 adds those of the {n} signal(s) below the plant does not read yet (a snapshot)"
            if n
            else "no variables here: type a NodeId from the tree and Enter"
        )
        tree.update(Text("\n".join(r.get("tree", []))))
        lines.update(Text(dumps({"signals": r.get("signals", [])}) if n else ""))

    @property
    def text(self) -> str:
        parts = []
        for wid in ("#ua-status", "#ua-tree", "#ua-lines"):
            v = self.query_one(wid, Static).render()
            parts.append(v.plain if isinstance(v, Text) else str(v))
        return "\n".join(parts)

    def action_add(self) -> None:
        if not self.result or not self.result.get("signals"):
            self.notify("nothing to add: browse a node with variables first", severity="warning")
            return
        self._add(list(self.result["signals"]))

    @work(thread=True, exclusive=True, exit_on_error=False, group="opcua-add")
    def _add(self, found: list[dict[str, Any]]) -> None:
        try:
            plant = dict(console_api(self).active_config())
        except Exception as e:  # noqa: BLE001 - a recording, a lost socket
            self.app.call_from_thread(self.notify, str(e), severity="error")
            return
        added = new_signals(plant, self.device, found)
        if not added:
            self.app.call_from_thread(
                self.notify, "every one of these signals is in the plant already"
            )
            return
        plant["signals"] = [*plant.get("signals", []), *added]
        msg = f"add {len(added)} signal(s) from OPC UA device {self.device}"
        r = apply_config(self.app, plant, msg)
        self.app.call_from_thread(
            self.notify, r.get("message", ""), severity="information" if r.get("ok") else "error"
        )
