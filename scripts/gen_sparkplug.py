#!/usr/bin/env python3
"""Regenerate the Sparkplug B classes from the specification's .proto, or check them.

    .venv/bin/python scripts/gen_sparkplug.py           # writes sparkplug_b_pb2.py and .pyi
    .venv/bin/python scripts/gen_sparkplug.py --check   # generates in a temp folder and
                                                        # compares with the checked-in files

floorconsole/adapters/sparkplug/sparkplug_b.proto is sparkplug_b/sparkplug_b.proto of the
Eclipse Tahu repository (EPL-2.0, its header kept), commit 5736e404889d4b95910613040a99ba79589ffb13.
protoc comes from grpcio-tools (the test extra pins it), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "floorconsole" / "adapters" / "sparkplug"
PROTO = "sparkplug_b.proto"
OUTPUTS = ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi")


def generate(out: Path) -> None:
    from grpc_tools import protoc

    rc = protoc.main(
        ["protoc", f"--proto_path={HERE}", f"--python_out={out}", f"--pyi_out={out}", PROTO]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}) on {HERE / PROTO}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    if not args.check:
        generate(HERE)
        print(f"wrote {', '.join(OUTPUTS)} in {HERE}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [
            name
            for name in OUTPUTS
            if (Path(tmp) / name).read_bytes() != (HERE / name).read_bytes()
        ]
    for name in stale:
        print(f"{name}: differs from what {PROTO} generates; run scripts/gen_sparkplug.py")
    if not stale:
        print(f"{', '.join(OUTPUTS)}: identical to what {PROTO} generates")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
