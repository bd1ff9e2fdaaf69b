"""Ingest figures: the historian against plain sqlite3, and registers → hub → historian.

    .venv/bin/python benchmarks/ingest.py [--rows 400000] [--repeat 3]

A. historian_ratio: rows/s our Historian commits from prebuilt Sample objects, divided by
   rows/s of plain sqlite3 executemany of the same rows into the same schema, with the same
   pragmas, the same transaction size, in the same run, each into a fresh file.
B. pipeline_samples_per_s: prebuilt raw Modbus registers → ReadBlock.decode → Sample (as the
   device poller makes them) → Hub.ingest → Historian (writer thread running), counted when the
   last sample is committed.

Prints readable figures, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorconsole.adapters.historian import (  # noqa: E402
    INSERT_SAMPLE,
    INSERT_SIGNAL,
    Historian,
    apply_pragmas,
    create_schema,
)
from floorconsole.core.clock import FakeClock  # noqa: E402
from floorconsole.core.quality import Quality, Reason  # noqa: E402
from floorconsole.core.sample import Sample  # noqa: E402

BATCH = 5000  # rows per transaction for both sides: ~0.1 s of a busy plant
N_SIGNALS = 100


# ---------------------------------------------------------------------- part A


def make_samples(n: int) -> list[Sample]:
    rng = random.Random(1)
    names = [f"line{i // 10}.sig{i % 10}" for i in range(N_SIGNALS)]
    t0 = time.time()
    out = []
    for i in range(n):
        name = names[i % N_SIGNALS]
        t = t0 + i * 1e-5
        if i % N_SIGNALS >= 90:  # a tenth are coils
            out.append(Sample(name, rng.random() < 0.5, Quality.GOOD, Reason.NONE, t, t - t0))
        elif i % 997 == 0:
            out.append(Sample(name, None, Quality.BAD, Reason.NO_COMM, t, t - t0, "timeout"))
        else:
            out.append(Sample(name, rng.uniform(0, 100), Quality.GOOD, Reason.NONE, t, t - t0))
    return out


def raw_rows(samples: list[Sample]) -> tuple[list[tuple[int, str]], list[tuple]]:
    """The rows the historian stores for these samples, built outside any timing."""
    ids: dict[str, int] = {}
    for s in samples:
        ids.setdefault(s.signal, len(ids) + 1)
    rows = [
        (
            ids[s.signal],
            s.t_source,
            s.value,
            (int(s.quality) << 8) | int(s.reason) | (1 << 16 if isinstance(s.value, bool) else 0),
        )
        for s in samples
    ]
    return [(i, name) for name, i in ids.items()], rows


def time_raw(path: Path, signals: list[tuple[int, str]], rows: list[tuple]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    apply_pragmas(conn)
    create_schema(conn)
    conn.executemany(INSERT_SIGNAL, signals)
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SAMPLE, rows[i : i + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == len(rows)
    conn.close()
    return len(rows) / elapsed


def time_historian(path: Path, samples: list[Sample]) -> float:
    # The writer thread sleeps an hour between cycles, so every commit here is one flush()
    # of one BATCH: the same transaction size as the raw side.
    h = Historian(path, flush_interval_s=3600.0)
    h.start()
    started = time.perf_counter()
    for i in range(0, len(samples), BATCH):
        h.append(samples[i : i + BATCH])
        h.flush()
    elapsed = time.perf_counter() - started
    st = h.stats
    h.close()
    assert st.rows_committed == len(samples) and st.errors == 0, st
    return len(samples) / elapsed


def time_historian_threaded(path: Path, samples: list[Sample]) -> float:
    """As the engine uses it: append 1,000 at a time, the writer thread commits on its own."""
    h = Historian(path, flush_interval_s=0.1)
    h.start()
    started = time.perf_counter()
    for i in range(0, len(samples), 1000):
        h.append(samples[i : i + 1000])
    while h.stats.rows_committed < len(samples):
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    h.close()
    return len(samples) / elapsed


def time_append(samples: list[Sample], tmp: Path) -> float:
    """Nanoseconds per sample that append() costs the engine thread (batches of 100)."""
    h = Historian(tmp / "append.db", flush_interval_s=3600.0)
    chunks = [samples[i : i + 100] for i in range(0, len(samples), 100)]
    started = time.perf_counter()
    for c in chunks:
        h.append(c)
    elapsed = time.perf_counter() - started
    return elapsed / len(samples) * 1e9


def part_a(tmp: Path, n: int, repeat: int) -> dict[str, float]:
    samples = make_samples(n)
    signals, rows = raw_rows(samples)
    raw, ours = [], []
    for r in range(repeat):  # alternate, so a slow moment of the machine hits both sides
        raw.append(time_raw(tmp / f"raw{r}.db", signals, rows))
        ours.append(time_historian(tmp / f"historian{r}.db", samples))
    threaded = time_historian_threaded(tmp / "threaded.db", samples)
    append_ns = time_append(samples, tmp)
    raw_rate, our_rate = statistics.median(raw), statistics.median(ours)
    print(f"A. historian, {n:,} samples, {BATCH:,} rows a transaction, WAL + synchronous=NORMAL")
    print(
        f"   plain sqlite3 executemany    {raw_rate:12,.0f} rows/s   (runs: "
        + ", ".join(f"{x:,.0f}" for x in raw)
        + ")"
    )
    print(
        f"   Historian from Sample        {our_rate:12,.0f} rows/s   (runs: "
        + ", ".join(f"{x:,.0f}" for x in ours)
        + ")"
    )
    print(f"   ratio                        {our_rate / raw_rate:12.2f}")
    print(f"   with its writer thread       {threaded:12,.0f} rows/s   (appends of 1,000)")
    print(f"   append() on the engine side  {append_ns:12.0f} ns/sample (batches of 100)")
    return {
        "historian_ratio": round(our_rate / raw_rate, 3),
        "historian_rows_per_s": round(our_rate),
        "raw_executemany_rows_per_s": round(raw_rate),
        "historian_threaded_rows_per_s": round(threaded),
        "historian_append_ns_per_sample": round(append_ns, 1),
    }


# ---------------------------------------------------------------------- part B


def part_b(tmp: Path, polls: int) -> dict[str, float]:
    from floorconsole.core.config import (
        DeviceConfig,
        EdgeConfig,
        ModbusPoint,
        PlantConfig,
        SignalConfig,
    )
    from floorconsole.core.registers import DecodeProblem, encode, plan_reads
    from floorconsole.engine.hub import Hub

    signals = []
    for i in range(40):
        signals.append(
            SignalConfig(f"press.temp{i}", ModbusPoint("drive1", "hr", 2 * i, "float32"))
        )
    for i in range(30):
        signals.append(
            SignalConfig(
                f"press.current{i}", ModbusPoint("drive1", "hr", 80 + i, "int16", scale=0.1)
            )
        )
    for i in range(20):
        signals.append(
            SignalConfig(
                f"press.count{i}", ModbusPoint("drive1", "ir", 2 * i, "uint32", word_order="little")
            )
        )
    for i in range(10):
        signals.append(SignalConfig(f"press.run{i}", ModbusPoint("drive1", "co", i, "bool")))
    plant = PlantConfig(
        edge=EdgeConfig(id="bench"),
        devices=(DeviceConfig("drive1", "modbus-tcp", "127.0.0.1", poll_s=0.01, timeout_s=0.5),),
        signals=tuple(signals),
    )
    blocks = plan_reads((s.id, s.source) for s in plant.signals)

    # Raw replies as a device would send them: 8 different polls, cycled.
    rng = random.Random(2)
    replies = []
    for _ in range(8):
        per_block = []
        for b in blocks:
            data: list = [0] * b.count
            for p in b.points:
                if p.type == "bool":
                    value: float | bool = rng.random() < 0.5
                elif p.type == "float32":
                    value = rng.uniform(20.0, 90.0)
                elif p.type == "int16":
                    value = round(rng.uniform(0.0, 30.0), 1)
                else:
                    value = float(rng.randrange(0, 2**32))
                words = encode(value, p)
                data[p.address - b.start : p.address - b.start + len(words)] = words
            per_block.append([bool(x) for x in data] if b.table == "co" else data)
        replies.append(per_block)

    clock = FakeClock(wall=time.time())
    historian = Historian(tmp / "pipeline.db", clock=clock, flush_interval_s=0.1)
    historian.start()
    hub = Hub(plant, clock, historian)
    good, none = Quality.GOOD, Reason.NONE
    total = 0
    started = time.perf_counter()
    for n in range(polls):
        clock.advance(0.001)
        reply = replies[n % len(replies)]
        for block, data in zip(blocks, reply, strict=True):
            values = block.decode(data)
            wall, mono = clock.wall(), clock.mono()
            # As DevicePoller._good makes them.
            if DecodeProblem in map(type, values):
                raise AssertionError(f"benchmark reply did not decode: {values}")
            samples = [
                Sample(k, v, good, none, wall, mono)
                for k, v in zip(block.keys, values, strict=True)
            ]
            hub.ingest(samples)
            total += len(samples)
    ingested = time.perf_counter() - started
    historian.flush()
    committed = time.perf_counter() - started
    st = historian.stats
    historian.close()
    assert st.errors == 0 and st.dropped == 0, st
    assert hub.samples_in == total
    rate = total / committed
    print(
        f"B. pipeline, {polls:,} polls of {len(plant.signals)} signals in {len(blocks)} reads "
        f"= {total:,} samples"
    )
    print(f"   decode + hub                 {total / ingested:12,.0f} samples/s")
    print(f"   decode + hub + committed     {rate:12,.0f} samples/s")
    return {
        "pipeline_samples_per_s": round(rate),
        "pipeline_ingest_samples_per_s": round(total / ingested),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--polls", type=int, default=3_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="floorconsole-bench-") as d:
        figures = part_a(Path(d), args.rows, args.repeat)
        figures.update(part_b(Path(d), args.polls))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
