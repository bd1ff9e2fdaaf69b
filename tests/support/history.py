"""What a history file holds, read as any reader does (HistoryReader: rows and packed samples)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from floorconsole.adapters.historian import HistoryReader


def stored_values(db: Path) -> Counter[tuple[str, int, float]]:
    """(signal, time in ms, value) of every scalar sample committed, counted."""
    with HistoryReader(db) as reader:
        return Counter(
            (name, round(r.t * 1000), r.value)
            for name in reader.signals()
            for r in reader.query(name, None, None)
        )


def stored_count(db: Path, signal: str | None = None) -> int:
    """Scalar samples committed, of one signal or of all (0 before the file exists)."""
    if not db.exists():
        return 0
    with HistoryReader(db) as reader:
        names = reader.signals() if signal is None else [signal]
        return sum(len(reader.query(name, None, None)) for name in names)
