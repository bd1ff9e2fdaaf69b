"""The rules screen's editor, driven by keys against a small fake engine API: edit, dry run
shown, apply with a message; bad values are named and nothing is sent."""

from __future__ import annotations

import copy
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Checkbox, Input, Select, Static

from floorconsole.console import (
    ActionView,
    Frame,
    HistorianView,
    History,
    RuleView,
    SignalView,
    Unavailable,
)
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import FloorApp, make_app
from floorconsole.ui.keys import keys_of
from floorconsole.ui.screens.rule_editor import (
    ActionKindDialog,
    ActionRow,
    ApplyDialog,
    RuleEditor,
    dry_run_lines,
    parse_number,
    problem_label,
    rule_changes,
    rule_template,
)
from floorconsole.ui.screens.rules import RulesScreen

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"
NOW = 1_795_000_000.0
APPLIED = {
    "ok": True,
    "message": "applied snapshot 9c1d2e (health check ok in 0.6 s)",
    "snapshot": "9c1d2e",
    "seconds": 0.6,
    "health": "ok",
}


def _signal(
    sid: str,
    kind: str = "scalar",
    rng: tuple[float, float] | None = None,
    value: float | bool | None = 0.2,
) -> SignalView:
    return SignalView(
        id=sid,
        asset=sid.split(".")[0],
        kind=kind,
        value=value,
        value_text=str(value),
        unit="",
        quality="GOOD",
        reason="",
        detail="",
        age_s=0.1,
        source="",
        range=rng,
    )


def _rule_view(rid: str, signal: str, enabled: bool = True) -> RuleView:
    return RuleView(
        id=rid,
        enabled=enabled,
        signal=signal,
        condition=f"{signal} > 0.8",
        value=0.2,
        quality="GOOD",
        active=False,
        pending="",
        last_activation=None,
        changes_last_hour=0,
        note="",
        actions=(ActionView("write", "drive1 co:10", "", None, None),),
    )


def demo_plant() -> dict[str, Any]:
    plant = tomllib.loads(DEMO.read_text(encoding="utf-8"))
    plant["devices"].append(
        {"id": "drive2", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": 5021}
    )
    plant["brokers"].append({"id": "plant", "host": "127.0.0.1", "port": 1884})
    plant["rules"].append(
        {
            "id": "hot-motor",
            "signal": "motor1.temp",
            "op": ">",
            "threshold": 90.0,
            "actions": [{"alarm": "medium"}],
        }
    )
    return plant


class FakeAPI(RecordedAPI):
    """What the console asks of an engine, answered from a plant dict; records every dry run
    and command. The dry run's count follows the threshold, so a test sees which rule ran.
    The rest of the console contract (sessions, journal) is a recording's."""

    def __init__(self, plant: dict[str, Any] | None = None) -> None:
        self.plant = plant or demo_plant()
        super().__init__(self.frame(), {})
        self.dry_runs: list[dict[str, Any]] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.apply_result: dict[str, Any] = dict(APPLIED)

    def frame(self) -> Frame:
        signals = (
            _signal("motor1.current", rng=(0.0, 50.0), value=12.0),
            _signal("motor1.temp", rng=(0.0, 120.0), value=61.0),
            _signal("motor1.trip", kind="bool", value=False),
            _signal("motor1.vibration.x", kind="waveform"),
            _signal("motor1.anomaly_score"),
        )
        rules = tuple(
            _rule_view(r["id"], r["signal"], r.get("enabled", True)) for r in self.plant["rules"]
        )
        return Frame(
            t_wall=NOW,
            t_mono=100.0,
            edge_id="line2-press",
            site="Plant 3 / Line 2",
            config_id="7f3a21",
            control_mode="writes enabled",
            signals=signals,
            links=(),
            conditions=(),
            historian=HistorianView(1000, 0, 0, "", 0, 4096),
            ingest_rate=10.0,
            rules=rules,
            snapshot="7f3a21",
        )

    def history(self, signal: str, since: float, until: float, max_points: int = 5000) -> History:
        return History(
            signal=signal, unit="", since=since, until=until, points=(), quality_changes=()
        )

    def active_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.plant)

    def dry_run(
        self, rule: dict[str, Any], hours: tuple[float, ...] = (1.0, 24.0)
    ) -> dict[str, Any]:
        self.dry_runs.append(copy.deepcopy(rule))
        current = next((r for r in self.plant["rules"] if r["id"] == rule["id"]), None)
        low = float(rule["threshold"]) < 0.8
        return {
            "ok": True,
            "rule": rule["id"],
            "signal": rule["signal"],
            "enabled": rule.get("enabled", True),
            "edited": {"1h": 3 if low else 0, "24h": 14 if low else 2},
            "current": {"1h": 0, "24h": 2} if current else None,
            "current_enabled": current.get("enabled", True) if current else None,
            "history_from": NOW - 30 * 3600,
            "now": NOW,
        }

    def command(self, name: str, **args: Any) -> dict[str, Any]:
        self.commands.append((name, copy.deepcopy(args)))
        return self.apply_result


def _app(api: Any) -> FloorApp:
    return make_app(api, refresh_hz=4.0)


async def settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def settle_until(
    pilot: Any, done: Callable[[], bool], what: str, timeout_s: float = 10.0
) -> None:
    """Settle until `done()`: a loaded machine may need more than one round of workers."""
    deadline = time.monotonic() + timeout_s
    await settle(pilot)
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await pilot.pause(0.05)
        await settle(pilot)


async def open_rules(pilot: Any, row: int = 0) -> RulesScreen:
    await settle(pilot)
    await pilot.press("f3")
    # Its table fills from the first frame; a key before that finds no rule selected.
    await settle_until(
        pilot,
        lambda: isinstance(pilot.app.screen, RulesScreen) and pilot.app.screen._frame is not None,
        "the rules screen shows its first frame",
    )
    screen = pilot.app.screen
    assert isinstance(screen, RulesScreen)
    for _ in range(row):
        await pilot.press("down")
    return screen


async def open_editor(pilot: Any, key: str = "e", row: int = 0) -> RuleEditor:
    await open_rules(pilot, row)
    await pilot.press(key)
    # The editor opens after its rule is read (a worker): under load, more than one round.
    await settle_until(
        pilot, lambda: isinstance(pilot.app.screen, RuleEditor), "the rule editor opens"
    )
    editor = pilot.app.screen
    assert isinstance(editor, RuleEditor)
    return editor


async def dry_run_done(pilot: Any) -> None:
    """Until the dry run shown is of the rule the fields make (after the debounce), or the
    fields have problems (then no dry run runs)."""
    editor = next(s for s in reversed(pilot.app.screen_stack) if isinstance(s, RuleEditor))
    for _ in range(100):
        await pilot.pause(0.1)
        await pilot.app.workers.wait_for_complete()
        rule, problems = editor.check()
        if problems or (editor.dry is not None and editor.dry[0] == rule):
            break
    await settle(pilot)


async def type_into(pilot: Any, editor: RuleEditor, selector: str, text: str) -> None:
    field = editor.query_one(selector, Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*list(text))
    await pilot.pause()


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def apply_with(pilot: Any, message: str) -> None:
    await pilot.press("f8")
    await settle(pilot)
    dialog = pilot.app.screen
    assert isinstance(dialog, ApplyDialog), dialog
    await pilot.press(*list(message), "enter")
    await settle(pilot)


async def test_edit_threshold_shows_the_dry_run_and_applies_with_a_message() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot)
        assert editor.query_one("#f-threshold", Input).value == "0.8"
        await dry_run_done(pilot)
        # Unedited, the dry run is today's rule against itself.
        assert "would have fired 2 times in 24 h; today's rule fired 2" in text_of(
            editor, "#dryrun"
        )
        await type_into(pilot, editor, "#f-threshold", "0.7")
        await dry_run_done(pilot)
        assert api.dry_runs[-1]["threshold"] == 0.7
        shown = text_of(editor, "#dryrun")
        assert "would have fired 14 times in 24 h; today's rule fired 2" in shown
        assert "would have fired 3 times in 1 h; today's rule fired 0" in shown

        await pilot.press("f8")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ApplyDialog)
        assert "would have fired 14 times in 24 h" in str(dialog.summary)
        assert "motor1.anomaly_score > 0.7" in str(dialog.summary)
        assert "Threshold 0.8 → 0.7" in str(dialog.summary)
        await pilot.press("enter")  # no message: refused, nothing sent
        await settle(pilot)
        assert app.screen is dialog and api.commands == []
        assert "A message is required" in text_of(dialog, "#error")
        await pilot.press(*list("more sensitive trip"), "enter")
        await settle(pilot)

        assert len(api.commands) == 1
        name, args = api.commands[0]
        assert name == "config.apply"
        assert args["message"] == "more sensitive trip" and "user" not in args
        sent = args["config"]
        before = demo_plant()
        trip = next(r for r in sent["rules"] if r["id"] == "trip-motor1")
        assert trip == {**before["rules"][0], "threshold": 0.7}
        assert sent["rules"][1] == before["rules"][1]
        assert {k: v for k, v in sent.items() if k != "rules"} == {
            k: v for k, v in before.items() if k != "rules"
        }
        assert isinstance(app.screen, RulesScreen)  # the editor closed on success


async def test_a_bad_value_is_named_and_nothing_is_sent() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot)
        await dry_run_done(pilot)
        runs = len(api.dry_runs)
        await type_into(pilot, editor, "#f-threshold", "high")
        await type_into(pilot, editor, "#f-on_delay", "5 sec")
        await dry_run_done(pilot)
        problems = text_of(editor, "#problems")
        assert "Threshold: 'high' is not a number (or true / false)" in problems
        assert len(api.dry_runs) == runs  # no dry run of a rule that does not parse
        await pilot.press("f8")
        await settle(pilot)
        assert app.screen is editor and api.commands == []

        await type_into(pilot, editor, "#f-threshold", "0.9")
        await dry_run_done(pilot)
        problems = text_of(editor, "#problems")
        assert "On delay: '5 sec' is not a duration like" in problems  # the engine's words
        await pilot.press("f8")
        await settle(pilot)
        assert app.screen is editor and api.commands == []


async def test_a_write_goes_to_another_device_and_a_publish_to_another_broker() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot)
        write, publish, alarm = editor.query(ActionRow)
        assert (write.kind, publish.kind, alarm.kind) == ("write", "publish", "alarm")
        devices = write.query_one(".a-write", Select)
        assert [o[1] for o in devices._options if o[1] is not Select.NULL] == ["drive1", "drive2"]
        devices.focus()
        await pilot.press("enter", "down", "enter")  # open the list, next device, take it
        await settle(pilot)
        assert devices.value == "drive2"
        await type_into(pilot, editor, "ActionRow .a-address", "ir:7")
        await dry_run_done(pilot)
        assert "Action 1 address: ir (input registers) is read-only" in text_of(editor, "#problems")
        await type_into(pilot, editor, "ActionRow .a-address", "hr:7")
        await type_into(pilot, editor, "ActionRow .a-on", "3")
        await type_into(pilot, editor, "ActionRow .a-off", "0")
        publish.query_one(".a-publish", Select).value = "plant"
        field = publish.query_one(".a-topic", Input)
        field.value = "plant3/line2/trips"
        await dry_run_done(pilot)
        assert text_of(editor, "#problems") == ""
        await apply_with(pilot, "trip drive2 too")
        [(_, args)] = api.commands
        trip = args["config"]["rules"][0]
        assert trip["actions"][0] == {"write": "drive2", "address": "hr:7", "on": 3, "off": 0}
        assert trip["actions"][1] == {"publish": "plant", "topic": "plant3/line2/trips", "qos": 1}
        assert trip["actions"][2] == demo_plant()["rules"][0]["actions"][2]


async def test_a_topic_with_a_wildcard_and_an_unknown_address_are_refused() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot)
        await type_into(pilot, editor, "ActionRow .a-address", "coil10")
        publish = list(editor.query(ActionRow))[1]
        publish.query_one(".a-topic", Input).value = "plant3/#"
        await dry_run_done(pilot)
        problems = text_of(editor, "#problems")
        assert "Action 1 address: 'coil10' is not an address like" in problems
        assert "Action 2 topic: 'plant3/#': publish to one topic; no wildcards" in problems
        await pilot.press("f8")
        await settle(pilot)
        assert api.commands == []


async def test_add_a_rule_from_the_template_with_an_action() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, key="n", row=1)
        assert editor.index is None
        assert editor.query_one("#f-signal", Select).value == "motor1.temp"
        assert editor.query_one("#f-threshold", Input).value == "108.0"  # 90 % of 0..120
        rid = editor.query_one("#f-id", Input)
        assert rid.value == "motor1.temp-high-1" and not rid.disabled
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, ActionKindDialog)
        await pilot.press("enter")  # write
        await settle(pilot)
        rows = list(editor.query(ActionRow))
        assert [r.kind for r in rows] == ["alarm", "write"]
        await type_into(pilot, editor, "ActionRow .a-address", "co:11")
        await dry_run_done(pilot)
        assert text_of(editor, "#problems") == ""
        assert "no rule with this id runs today" in text_of(editor, "#dryrun")
        await apply_with(pilot, "warn on a hot motor")
        [(_, args)] = api.commands
        rules = args["config"]["rules"]
        assert len(rules) == 3 and rules[:2] == demo_plant()["rules"]
        assert rules[2] == {
            "id": "motor1.temp-high-1",
            "signal": "motor1.temp",
            "op": ">",
            "threshold": 108.0,
            "on_delay": "5s",
            "off_delay": "2s",
            "on_bad_quality": "hold",
            "enabled": True,
            "actions": [
                {"alarm": "medium", "message": "motor1.temp high"},
                {"write": "drive1", "address": "co:11", "on": True, "off": False},
            ],
        }


async def test_two_rules_on_one_output_are_refused_and_an_action_can_be_removed() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, row=1)  # hot-motor
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await type_into(pilot, editor, "ActionRow .a-address", "co:10")
        await dry_run_done(pilot)
        assert "co:10 on drive1 is already written by rule 'trip-motor1'" in text_of(
            editor, "#problems"
        )
        await pilot.press("f4")  # the focus is in the new write action
        await settle(pilot)
        assert [r.kind for r in editor.query(ActionRow)] == ["alarm"]
        assert text_of(editor, "#problems") == ""
        await pilot.press("f8")
        await settle(pilot)
        # Nothing changed: nothing to apply.
        assert app.screen is editor and api.commands == []


async def test_disable_and_enable_a_rule_with_t() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_rules(pilot)
        await pilot.press("t")
        await settle_until(pilot, lambda: isinstance(app.screen, ApplyDialog), "the apply dialog")
        dialog = app.screen
        assert isinstance(dialog, ApplyDialog)
        assert "Disable rule trip-motor1" in str(dialog.summary)
        assert "today's rule fired 0 in 1 h, 2 in 24 h" in str(dialog.summary)
        await pilot.press(*list("maintenance on motor 1"), "enter")
        await settle_until(
            pilot,
            lambda: bool(api.commands) and isinstance(app.screen, RulesScreen),
            "the apply sent and the dialog closed",
        )
        [(name, args)] = api.commands
        assert name == "config.apply" and args["message"] == "maintenance on motor 1"
        assert args["config"]["rules"][0] == {**demo_plant()["rules"][0], "enabled": False}
        assert args["config"]["rules"][1] == demo_plant()["rules"][1]
        assert isinstance(app.screen, RulesScreen)

        api.plant["rules"][0]["enabled"] = False
        await pilot.press("t")
        await settle_until(pilot, lambda: isinstance(app.screen, ApplyDialog), "the apply dialog")
        assert "Enable rule trip-motor1" in str(app.screen.summary)  # type: ignore[attr-defined]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen) and len(api.commands) == 1


async def test_leaving_with_changes_asks_first() -> None:
    from floorconsole.ui.screens.snapshots import ConfirmDialog

    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot)
        await pilot.press("escape")  # nothing changed: it just closes
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen)
        editor = await open_editor(pilot)
        await type_into(pilot, editor, "#f-threshold", "0.5")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await settle(pilot)
        assert app.screen is editor
        assert editor.query_one("#f-threshold", Input).value == "0.5"
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen) and api.commands == []


async def test_a_failed_apply_keeps_the_editor_open_with_the_engines_answer() -> None:
    api = FakeAPI()
    api.apply_result = {
        "ok": False,
        "message": "health check failed (motor1.anomaly_score "
        "not GOOD within 10 s); snapshot 7f3a21 is back",
        "snapshot": "7f3a21",
        "seconds": 10.2,
        "health": "failed",
    }
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot)
        editor.query_one("#f-enabled", Checkbox).value = False
        await dry_run_done(pilot)
        assert "disabled: as edited, the rule would not act at all" in text_of(editor, "#dryrun")
        await apply_with(pilot, "try it off")
        assert len(api.commands) == 1
        assert app.screen is editor
        assert "NOT APPLIED: health check failed" in text_of(editor, "#dryrun")
        assert "snapshot 7f3a21 is back" in text_of(editor, "#dryrun")


async def test_a_console_without_the_running_configuration_says_so() -> None:
    class ReadOnlyAPI(FakeAPI):
        def active_config(self) -> dict[str, Any]:
            raise Unavailable("this engine gives out no running configuration")

    app = _app(ReadOnlyAPI())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_rules(pilot)
        for key in ("e", "n", "t"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, RulesScreen)
        await settle_until(
            pilot,
            lambda: any(
                "rules cannot be changed from this console" in n.message for n in app._notifications
            ),
            "the note that rules cannot be changed here",
        )
        assert isinstance(app.screen, RulesScreen)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_editor_fits_and_shows_its_keys(size: tuple[int, int]) -> None:
    app = _app(FakeAPI())
    async with app.run_test(size=size) as pilot:
        editor = await open_editor(pilot)
        await dry_run_done(pilot)
        w, h = size
        for sel in ("#title", "#problems", "#dryrun", "Footer"):
            r = editor.query_one(sel).region
            assert r.x >= 0 and r.right <= w and r.y >= 0 and r.bottom <= h, (sel, r)
        assert editor.query_one("#dryrun").region.height >= 3  # head and both windows
        for row in editor.query(ActionRow):
            for child in row.children:
                assert child.region.right <= w, (child, child.region)
        footer = " ".join(b.description for b in editor.BINDINGS)  # type: ignore[union-attr]
        for word in ("Dry run", "Apply", "Cancel"):
            assert word in footer


def _bound(cls: type) -> set[str]:
    return {k.strip() for b in cls.BINDINGS for k in b.key.split(",")}  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", [RulesScreen, RuleEditor, ApplyDialog, ActionKindDialog])
def test_every_key_is_in_the_key_table(cls: type) -> None:
    missing = _bound(cls) - keys_of("Rules")
    assert not missing, f"{cls.__name__} binds {sorted(missing)}, not listed in ui/keys.py"


# -- the plain parts -------------------------------------------------------------------------


def test_numbers_and_problem_names() -> None:
    assert parse_number("0.8") == 0.8 and parse_number(" 12 ") == 12
    assert parse_number("true", allow_bool=True) is True
    with pytest.raises(ValueError, match="'true' is not a number"):
        parse_number("true")
    with pytest.raises(ValueError, match="not a finite number"):
        parse_number("nan")
    rules = [{"id": "a"}, {"id": "b"}]
    assert problem_label("rules[1].threshold", 1, rules) == "Threshold"
    assert problem_label("rules[1].actions[0].address", 1, rules) == "Action 1 address"
    assert problem_label("rules[1].actions[2]", 1, rules) == "Action 3"
    assert problem_label("rules[0].actions[0].address", 1, rules) == "Rule a actions[0].address"
    assert problem_label("rules[1]", 1, rules) == "Rule"


def test_dry_run_words() -> None:
    lines = dry_run_lines(
        {
            "ok": True,
            "signal": "s",
            "enabled": True,
            "edited": {"1h": 1, "24h": 14},
            "current": {"1h": 0, "24h": 2},
            "history_from": NOW - 5 * 3600,
            "now": NOW,
        }
    )
    assert lines == [
        "would have fired 1 time in 1 h; today's rule fired 0",
        "would have fired 14 times in 24 h; today's rule fired 2",
        "history covers only the last 5.0 h",
    ]
    assert dry_run_lines({"ok": False, "message": "threshold: bad"}) == ["dry run: threshold: bad"]
    empty = dry_run_lines(
        {
            "ok": True,
            "signal": "s",
            "edited": {"24h": 0},
            "current": None,
            "history_from": None,
            "now": NOW,
        }
    )
    assert "no history of s in the window: nothing to replay" in empty
    short = dry_run_lines(
        {
            "ok": True,
            "signal": "s",
            "edited": {"1h": 0, "24h": 0},
            "current": None,
            "history_from": NOW - 600,
            "now": NOW,
        }
    )
    assert short[-1] == "history covers only the last 10 min"


def test_what_an_edit_changes_in_words() -> None:
    before = demo_plant()["rules"][0]
    after = copy.deepcopy(before)
    after["threshold"] = 0.7
    del after["min_on"]
    after["actions"][0]["write"] = "drive2"
    after["actions"].pop(1)
    assert rule_changes(before, after) == [
        "Threshold 0.8 → 0.7",
        "Min on 20s → (none)",
        "Action 1 write drive1 co:10 (on true, off false) → write drive2 co:10 (on true, off "
        "false)",
        "Action 2 publish local plant3/line2/alarms (QoS 1) → alarm high 'Motor 1 anomaly: "
        "tripped'",
        "Action 3 removed: alarm high 'Motor 1 anomaly: tripped'",
    ]


def test_the_template_takes_a_free_id() -> None:
    plant = {"rules": [{"id": "tank.level-high-1"}]}
    t = rule_template(plant, "tank.level", (0.0, 10.0), None)
    assert t["id"] == "tank.level-high-2" and t["threshold"] == 9.0
    assert rule_template(plant, "x", None, 3.25)["threshold"] == 3.25
    assert rule_template(plant, "x", None, 0.2074571)["threshold"] == 0.207


async def test_a_new_rule_follows_its_signal_until_a_field_is_edited() -> None:
    """The template's threshold, id and alarm message are of the signal first shown; choosing
    another signal gives that signal's, except where someone typed their own."""
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, key="n", row=1)
        assert editor.query_one("#f-threshold", Input).value == "108.0"
        editor.query_one("#f-signal", Select).value = "motor1.current"
        await settle(pilot)
        assert editor.query_one("#f-threshold", Input).value == "45.0"  # 90 % of 0..50
        assert editor.query_one("#f-id", Input).value == "motor1.current-high-1"
        message = editor.query_one("ActionRow .a-message", Input)
        assert message.value == "motor1.current high"
        await type_into(pilot, editor, "#f-threshold", "30")
        editor.query_one("#f-signal", Select).value = "motor1.temp"
        await settle(pilot)
        assert editor.query_one("#f-threshold", Input).value == "30"  # typed: kept
        assert message.value == "motor1.temp high"
        rule, problems = editor.check()
        assert not problems, problems
        assert (rule["signal"], rule["threshold"], rule["actions"][0]["message"]) == (
            "motor1.temp",
            30,
            "motor1.temp high",
        )


async def test_a_write_without_an_address_is_named_not_sent() -> None:
    api = FakeAPI()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, key="n", row=1)
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("enter")  # write
        await settle(pilot)
        address = editor.query_one("ActionRow .a-address", Input)
        assert address.value == "" and address.placeholder == "required"
        _rule, problems = editor.check()
        assert problems == [
            "Action 2 address: required, e.g. co:10 (a coil) or hr:5 (a holding register)"
        ], problems
        await dry_run_done(pilot)
        assert "address: required" in text_of(editor, "#problems")
