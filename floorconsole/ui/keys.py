"""Every key of the console, by screen: the table the help screen shows and the tests check."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyHelp:
    keys: tuple[str, ...]  # every key that does it, as Textual names them ("f1", "question_mark")
    what: str

    @property
    def shown(self) -> str:
        """The keys as a person reads them: 'F1 h ?'."""
        return " ".join(key_label(k) for k in self.keys)


_LABELS = {
    "escape": "Esc",
    "backspace": "Backspace",
    "enter": "Enter",
    "question_mark": "?",
    "slash": "/",
    "up": "↑",
    "left": "←",
    "right": "→",
    "down": "↓",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "home": "Home",
    "end": "End",
    "tab": "Tab",
    "space": "Space",
    "ctrl+backslash": "ctrl+\\",
    "exclamation_mark": "!",
}


def key_label(key: str) -> str:
    if key in _LABELS:
        return _LABELS[key]
    if len(key) >= 2 and key[0] == "f" and key[1:].isdigit():
        return key.upper()
    return key


KEYS: tuple[tuple[str, tuple[KeyHelp, ...]], ...] = (
    (
        "Overview",
        (
            KeyHelp(("up", "down", "pageup", "pagedown"), "move through the signals"),
            KeyHelp(("enter", "d"), "open the detail of the selected signal"),
            KeyHelp(("slash", "f7"), "search signals by name (Enter keeps it, Esc clears it)"),
            KeyHelp(("b", "f8"), "show only signals that are not GOOD (again: all)"),
            KeyHelp(("g",), "group the signals by asset (again: one list)"),
            KeyHelp(("f2", "A"), "alarms: acknowledge, shelve, filter, the journal, alarm KPIs"),
            KeyHelp(("f3", "R"), "rules: each rule's live state, timers and last action results"),
            KeyHelp(("f4", "M"), "the model: drift of each feature against its training data"),
            KeyHelp(("f5", "S"), "snapshots: every configuration that ran, diff, one-key rollback"),
            KeyHelp(("U",), "uplink: plant broker, backlog, drain progress and time left, drops"),
            KeyHelp(("p",), "pin the selected signal for the trend (four at most; again: unpin)"),
            KeyHelp(("T",), "trend: the pinned signals together, each on its own scale"),
            KeyHelp(("L",), "links: each device and broker, bad payloads and values by reason"),
            KeyHelp(("escape",), "clear the search"),
        ),
    ),
    (
        "Alarms",
        (
            KeyHelp(("a", "enter"), "acknowledge the selected alarm"),
            KeyHelp(("A",), "acknowledge every unacknowledged alarm shown"),
            KeyHelp(("s",), "shelve the selected alarm for 15 min, 1 h, 4 h or 8 h (the most)"),
            KeyHelp(("u",), "unshelve the selected alarm"),
            KeyHelp(("f", "p", "n"), "filter by state, by priority; show normal alarms too"),
            KeyHelp(("j",), "the alarm journal: every transition, who and when"),
            KeyHelp(
                ("k",),
                "alarm KPIs from the journal against the ISA-18.2 targets; 1-4: the last hour, "
                "8 hours, 24 hours, 7 days",
            ),
        ),
    ),
    (
        "Snapshots",
        (
            KeyHelp(("r",), "roll back to the selected snapshot (asks first; health-checked)"),
            KeyHelp(
                ("space", "d"), "mark a snapshot, then d: what changed from it to the selected"
            ),
            KeyHelp(("v",), "the activation history: what ran when, and how its check went"),
            KeyHelp(
                ("a", "x"),
                "a remote change from the fleet held here: a accepts it (health-checked), "
                "x defers it with why",
            ),
            KeyHelp(("y", "n"), "answer a confirmation (Esc is no)"),
            KeyHelp(("escape", "backspace"), "back to the overview"),
        ),
    ),
    (
        "Rules",
        (
            KeyHelp(
                ("e", "enter"),
                "edit the selected rule: threshold, deadband, delays, quality "
                "policy, where its actions write or publish",
            ),
            KeyHelp(("n",), "add a rule from a template"),
            KeyHelp(("t",), "enable or disable the selected rule (here t is not the theme)"),
            KeyHelp(("f3",), "reset the selected latched rule (a trip) once clear, with why"),
            KeyHelp(("escape", "backspace"), "back to the overview"),
            KeyHelp(
                ("tab", "shift+tab"), "rule editor: next or previous field (Enter moves on too)"
            ),
            KeyHelp(("f5",), "rule editor: dry run over the last hour and day of history"),
            KeyHelp(("f8",), "rule editor: apply; shows the dry run and asks why, then applies"),
            KeyHelp(("f3", "f4"), "rule editor: add an action, or remove the one you are in"),
            KeyHelp(("escape",), "rule editor and its dialogs: close without applying"),
            KeyHelp(("enter",), "apply dialog: apply with the message typed"),
        ),
    ),
    (
        "Model and drift",
        (
            KeyHelp(("up", "down"), "choose a feature"),
            KeyHelp(("escape", "backspace"), "back to the overview"),
        ),
    ),
    (
        "Signal detail",
        (
            KeyHelp(("m",), "history of the last 5 minutes"),
            KeyHelp(("o",), "history of the last hour"),
            KeyHelp(("d",), "history of the last 24 hours (a day)"),
            KeyHelp(
                ("c",),
                "custom range: 90m, 2h, 1d back from now, or two times "
                "2026-11-23T10:00 2026-11-23T12:00 (the console's zone, shown by the clock; "
                "Z for UTC)",
            ),
            KeyHelp(("y",), "y axis: the data's min/max, or the signal's engineering range"),
            KeyHelp(("x", "f12"), "export the shown range to CSV (times with their zone offset)"),
            KeyHelp(
                ("w",),
                "write by hand: this signal's coil or holding register, or any co/hr "
                "address typed (an engineer's; arm, then confirm)",
            ),
            KeyHelp(
                ("escape", "backspace"), "back to the overview (Esc also closes the range entry)"
            ),
        ),
    ),
    (
        "Trend",
        (
            KeyHelp(("m", "o", "d", "c"), "range: 5 minutes, an hour, 24 hours, custom"),
            KeyHelp(("left", "right"), "move the cursor a column (with shift: ten); Home, End"),
            KeyHelp(("y",), "y axes: each signal's own min/max, or its engineering range"),
            KeyHelp(("x", "f12"), "export what is shown to CSV (times with their offset)"),
            KeyHelp(("escape", "backspace"), "back to the overview"),
        ),
    ),
    (
        "Write by hand",
        (
            KeyHelp(
                ("tab", "shift+tab"),
                "next or previous field: device, address (co:N, hr:N), type, value",
            ),
            KeyHelp(
                ("enter",),
                "in the value: arm the write (the engine checks device, address, "
                "value, role and control)",
            ),
            KeyHelp(
                ("y", "enter"),
                "once armed: confirm within 10 s (the PIN again if older than "
                "60 s); shows the value before and after",
            ),
            KeyHelp(("escape",), "cancel the arm (nothing is written), or close"),
        ),
    ),
    (
        "Audit",
        (
            KeyHelp(
                ("slash",),
                "search the trail: user, kind, target or detail (Enter keeps, Esc clears)",
            ),
            KeyHelp(
                ("k", "u", "w"), "filter by kind, by user; the time window (1 h, 24 h, 7 d, all)"
            ),
            KeyHelp(("r",), "read the trail again"),
            KeyHelp(("v",), "verify the hash chain: intact, or where it breaks"),
            KeyHelp(("enter",), "the whole record of the selected row (Esc, Enter or q closes it)"),
            KeyHelp(("escape", "backspace", "f6"), "back"),
        ),
    ),
    (
        "Login and PIN",
        (
            KeyHelp(("f9",), "log in: user name, then PIN (masked); Enter goes on, Esc cancels"),
            KeyHelp(
                ("l", "s", "u", "c"),
                "once logged in, F9 offers: log out, switch user, unlock, "
                "take / ask for / release control",
            ),
            KeyHelp(
                ("enter",),
                "PIN prompt (a critical action, or a locked console): go on; "
                "the action runs once more",
            ),
            KeyHelp(("escape",), "PIN prompt: cancel; nothing is done"),
        ),
    ),
    (
        "Everywhere",
        (
            KeyHelp(("f1", "h", "question_mark"), "this help"),
            KeyHelp(("escape", "q", "f1"), "close this help"),
            KeyHelp(("f6",), "the audit trail: who did what, when"),
            KeyHelp(("f9",), "log in, or log out / switch user / unlock"),
            KeyHelp(
                ("c",),
                "control (one console at a time writes, changes rules, rolls back): "
                "take it when free, ask the holder for it, release it when you hold "
                "it (on a signal's detail c is the custom range: press it elsewhere)",
            ),
            KeyHelp(("t",), "next colour theme"),
            KeyHelp(
                ("exclamation_mark",),
                "silence the bell of the alarms ringing now (--annunciate: a new alarm at or "
                "above the priority rings and flashes until acknowledged on F2)",
            ),
            KeyHelp(
                ("q", "f10", "ctrl+q"),
                "quit the console (not in kiosk mode); under run or demo it stops the "
                "engine, and asks first",
            ),
            KeyHelp(("f11",), "kiosk mode only: leave it, with an admin's name and PIN"),
            KeyHelp(
                ("ctrl+c", "ctrl+z", "ctrl+backslash", "ctrl+p"),
                "nothing that leaves the console: no quit, no suspend, no command palette "
                "(in kiosk mode they say how to leave)",
            ),
        ),
    ),
    (
        "Demo",
        (
            KeyHelp(
                ("1", "2", "3", "4", "5", "6"),
                "inject or clear a simulated fault (overview; "
                "the line above the table lists them, * when "
                "active)",
            ),
        ),
    ),
)


def keys_of(group: str) -> set[str]:
    """Every key listed in one group."""
    for name, entries in KEYS:
        if name == group:
            return {k for e in entries for k in e.keys}
    raise KeyError(f"no key group {group!r}; have {', '.join(n for n, _ in KEYS)}")
