"""Value quality after OPC UA: GOOD, UNCERTAIN or BAD, always with the reason."""

from __future__ import annotations

from enum import IntEnum


class Quality(IntEnum):
    """How far a value can be trusted. Order matters: higher is worse."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class Reason(IntEnum):
    """Why a value is not GOOD. NONE only goes with GOOD."""

    NONE = 0
    # UNCERTAIN
    INITIAL = 10
    LAST_USABLE = 11
    SUBSTITUTE = 12
    OUT_OF_RANGE = 13
    # BAD
    NO_COMM = 20
    DEVICE_FAILURE = 21
    CONFIG_ERROR = 22
    DECODE_ERROR = 23
    OUT_OF_SERVICE = 24

    @property
    def text(self) -> str:
        return _REASON_TEXT[self]

    @property
    def quality(self) -> Quality:
        """The quality this reason belongs to."""
        if self is Reason.NONE:
            return Quality.GOOD
        return Quality.UNCERTAIN if self.value < 20 else Quality.BAD


_REASON_TEXT = {
    Reason.NONE: "",
    Reason.INITIAL: "initial",
    Reason.LAST_USABLE: "last usable",
    Reason.SUBSTITUTE: "substitute",
    Reason.OUT_OF_RANGE: "out of range",
    Reason.NO_COMM: "no communication",
    Reason.DEVICE_FAILURE: "device failure",
    Reason.CONFIG_ERROR: "configuration error",
    Reason.DECODE_ERROR: "decoding error",
    Reason.OUT_OF_SERVICE: "out of service",
}

# Short labels for narrow columns; each state also has a shape so it reads without colour.
QUALITY_LABEL = {Quality.GOOD: "GOOD", Quality.UNCERTAIN: "UNCERT", Quality.BAD: "BAD"}
QUALITY_SHAPE = {Quality.GOOD: "●", Quality.UNCERTAIN: "◆", Quality.BAD: "✕"}
