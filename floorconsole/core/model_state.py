"""A model's state in one word, and the labels of enumerated signals: one derivation for every
screen, the history and the uplink, so no two places can tell a different story."""

from __future__ import annotations

from collections.abc import Sequence

NORMAL = "NORMAL"
WARNING = "WARNING"
CRITICAL = "CRITICAL"
BAD = "BAD"
OUT_OF_SERVICE = "OUT OF SERVICE"

# The model's state signal carries a code (0, 1, 2); these are its words, in code order.
STATE_LABELS = (NORMAL, WARNING, CRITICAL)
# A model's drift.status signal: 0 ok, 1 warning, 2 alert (core.drift.DRIFT_STATES' words).
DRIFT_LABELS = ("OK", "WARNING", "ALERT")
# While the drift window fills, the signal carries 0 UNCERTAIN (initial): it says FILLING, the
# word of the model and drift panels, not OK.
FILLING = "FILLING"
# The words that say "not scoring": the score carried beside them is the last one, not now's.
NOT_SCORING = (BAD, OUT_OF_SERVICE)

_OUT_OF_SERVICE_REASON = "out of service"  # core.quality.Reason.OUT_OF_SERVICE.text
_INITIAL_REASON = "initial"  # core.quality.Reason.INITIAL.text


def bad_word(reason: str) -> str:
    """The word for a value that is BAD: OUT OF SERVICE when it was told not to be computed
    (its machine stopped), BAD otherwise."""
    return OUT_OF_SERVICE if reason.strip().lower() == _OUT_OF_SERVICE_REASON else BAD


def model_state_word(*, running: bool, quality: str, reason: str, state: str | int) -> str:
    """NORMAL, WARNING, CRITICAL, BAD or OUT OF SERVICE.

    A model whose outputs are BAD is not scoring: its last state (kept beside the BAD value,
    and reset to normal when its machine stopped) must never read as NORMAL. A model that is
    not running at all is BAD. state: the runner's word ("normal") or the signal's code (0)."""
    if not running:
        return BAD
    if quality == "BAD":
        return bad_word(reason)
    return state_label(state)


def state_label(state: str | int | float) -> str:
    """The word of a state given as its code (0, 1.0) or its name ("warning")."""
    if isinstance(state, str):
        word = state.strip().upper()
        return word if word in STATE_LABELS else word or BAD
    return enum_label(STATE_LABELS, state)


def enum_label(labels: Sequence[str], value: float | int | bool | None) -> str:
    """The label of an enumerated signal's value; a code outside the labels says so."""
    if value is None:
        return "—"
    try:
        code = int(value)
    except (TypeError, ValueError, OverflowError):
        return f"? {value}"
    if code != value or not 0 <= code < len(labels):
        return f"? {value:g}"
    return labels[code]


def enum_text(
    labels: Sequence[str], value: float | int | bool | None, quality: str, reason: str
) -> str:
    """What an enumerated signal shows: its label, or BAD / OUT OF SERVICE while its value is
    BAD (the value carried then is the last one, and 0 would read as normal)."""
    if quality == "BAD":
        return bad_word(reason)
    if (
        tuple(labels) == DRIFT_LABELS
        and quality == "UNCERTAIN"
        and reason.strip().lower() == _INITIAL_REASON
    ):
        return FILLING
    return enum_label(labels, value)
