"""The console contract: the one door from a screen to an engine, in process or not.

The UI imports from here and from core, nothing else of ours: the frame views, the
ConsoleAPI protocol every engine stand-in provides, its errors and typed answers, the
value format, and the decoder that reads views back from JSON. This package imports only
core and the standard library, so the engine and the UI both build on it.
"""

from floorconsole.console.contract import (
    CALLS,
    CommandError,
    CommandResult,
    ConsoleAPI,
    Unavailable,
    viewer_session,
)
from floorconsole.console.decode import DecodeError, decode
from floorconsole.console.views import (
    ActionView,
    AlarmSummary,
    AlarmView,
    Condition,
    DemoView,
    DriftFeatureView,
    FleetPendingView,
    Frame,
    HistorianView,
    History,
    HistoryPoint,
    LinkView,
    ModelView,
    QualityMark,
    RuleView,
    SignalView,
    format_value,
)

__all__ = [
    "CALLS",
    "ActionView",
    "AlarmSummary",
    "AlarmView",
    "CommandError",
    "CommandResult",
    "Condition",
    "ConsoleAPI",
    "DecodeError",
    "DemoView",
    "DriftFeatureView",
    "FleetPendingView",
    "Frame",
    "HistorianView",
    "History",
    "HistoryPoint",
    "LinkView",
    "ModelView",
    "QualityMark",
    "RuleView",
    "SignalView",
    "Unavailable",
    "decode",
    "format_value",
    "viewer_session",
]
