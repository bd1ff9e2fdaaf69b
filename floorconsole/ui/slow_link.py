"""When the terminal cannot keep up: the console's slow-link profile, entered and left on its own.

Over SSH on a thin link (a cellular modem, a VPN over a congested uplink) the terminal takes
what the console writes more slowly than the console writes it: the writes block while the
pty's buffer is full. The console measures how much of the time its writer spends blocked in
the terminal's write and flush; when that is half the time or more for two checks in a row,
the terminal is not keeping up, and the console drops to its slow-link profile: one redraw a
second, no sparklines, no flashing (an unacknowledged alarm's banner stays lit instead). It
says so once, and leaves the profile after the terminal has kept up easily for a minute.

Pure: fed the writer's busy seconds and the clock by the app, so a test drives it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

CHECK_EVERY_S = 2.0  # how often the app feeds it
ENTER_BUSY = 0.5  # the share of wall time blocked writing that means "not keeping up"
ENTER_CHECKS = 2  # that many checks in a row (4 s: one slow burst is not a slow link)
LEAVE_BUSY = 0.05  # below this share the terminal keeps up easily
LEAVE_AFTER_S = 60.0  # for this long before the full profile comes back
SLOW_REFRESH_HZ = 1.0


@dataclass
class SlowLink:
    """The slow-link state of one console: feed() says when it changes."""

    slow: bool = False
    last_busy_fraction: float = 0.0
    _busy_s: float | None = None
    _at: float | None = None
    _over: int = 0
    _easy_since: float | None = None

    def feed(self, busy_s: float, now: float) -> bool | None:
        """busy_s: the writer's total seconds blocked so far; now: a monotonic clock.
        True when the slow profile starts, False when it ends, None otherwise."""
        if self._busy_s is None or self._at is None or now <= self._at:
            self._busy_s, self._at = busy_s, now
            return None
        share = max(0.0, busy_s - self._busy_s) / (now - self._at)
        self._busy_s, self._at = busy_s, now
        self.last_busy_fraction = share
        if not self.slow:
            self._over = self._over + 1 if share >= ENTER_BUSY else 0
            if self._over >= ENTER_CHECKS:
                self.slow, self._over, self._easy_since = True, 0, None
                return True
            return None
        if share > LEAVE_BUSY:
            self._easy_since = None
            return None
        if self._easy_since is None:
            self._easy_since = now
        if now - self._easy_since >= LEAVE_AFTER_S:
            self.slow, self._easy_since = False, None
            return False
        return None
