"""A process that writes a running sequence number to a historian, for the kill -9 test.

    python -m tests.support.historian_writer DB [--rate 5000] [--signal seq] [--compact-every S]

Appends samples whose values are 0, 1, 2, ... at the given rate and, after each flush that
leaves nothing pending, prints "committed N": every value up to N is then committed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from floorconsole.adapters import historian as historian_module
from floorconsole.adapters.historian import Historian
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

FLUSH_EVERY_S = 0.05


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--signal", default="seq")
    parser.add_argument("--compact-every", type=float, default=None, metavar="S")
    args = parser.parse_args(argv)
    if args.compact_every is not None:  # chunks regrouped into blocks this often
        historian_module.COMPACT_EVERY_S = args.compact_every

    historian = Historian(args.db, flush_interval_s=FLUSH_EVERY_S)
    historian.start()
    print("started", flush=True)
    seq = 0
    started = time.monotonic()
    next_flush = started + FLUSH_EVERY_S
    while True:
        now = time.monotonic()
        due = int((now - started) * args.rate)
        if due > seq:
            wall = time.time()
            historian.append(
                [
                    Sample(args.signal, float(i), Quality.GOOD, Reason.NONE, wall, now)
                    for i in range(seq, due)
                ]
            )
            seq = due
        if now >= next_flush:
            next_flush = now + FLUSH_EVERY_S
            historian.flush()
            # Only this thread appends, so nothing pending means everything up to seq - 1 is in.
            if seq and historian.stats.rows_pending == 0:
                sys.stdout.write(f"committed {seq - 1}\n")
                sys.stdout.flush()
        time.sleep(0.002)


if __name__ == "__main__":
    main()
