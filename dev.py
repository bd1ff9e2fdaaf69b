#!/usr/bin/env python3
"""Bootstrap for a fresh machine: `python3 dev.py demo` or `python3 dev.py test`.

Creates .venv beside this file on first use, installs floorconsole into it (again whenever
pyproject.toml changes), then runs the demo or the test suite. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".floorconsole-installed"


def ensure_env(extras: str) -> None:
    """Install floorconsole with these extras unless pyproject.toml is unchanged since an
    install that already had them (the stamp holds the hash and the extras installed)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 is
        sys.exit(f"floorconsole needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = set(extras.split(","))
    have: set[str] = set()
    if STAMP.exists():
        stamp_digest, _, stamp_extras = STAMP.read_text().strip().partition(" ")
        if stamp_digest == digest:
            have = set(stamp_extras.split(",")) if stamp_extras else set()
    if wanted <= have:
        return
    union = ",".join(sorted(wanted | have))
    print(f"installing floorconsole[{union}] into {VENV} ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["-e", f"{ROOT}[{union}]"], check=True)
    STAMP.write_text(f"{digest} {union}")


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


def run_tests(args: list[str]) -> int:
    if mosquitto_path() is None:
        print(
            "the tests need a real mosquitto broker: apt-get install -y mosquitto", file=sys.stderr
        )
        return 1
    steps = [
        [
            str(BIN / "ruff"),
            "check",
            "floorconsole",
            "tests",
            "benchmarks",
            "fixtures",
            "scripts",
            "dev.py",
        ],
        [
            str(BIN / "ruff"),
            "format",
            "--check",
            "floorconsole",
            "tests",
            "benchmarks",
            "fixtures",
            "scripts",
            "dev.py",
        ],
        [
            str(BIN / "mypy"),
            "floorconsole/core",
            "floorconsole/console",
            "floorconsole/engine",
            "floorconsole/ui",
        ],
    ]
    for cmd in steps:
        print("$", " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)), flush=True)
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0:
            return rc
    return run_pytest(args)


def run_pytest(args: list[str]) -> int:
    """The suite. Without arguments, the tests marked `waits` (60 s broker outages: the box
    mostly sleeps while the broker is away) run in a pytest of their own beside the rest, so
    three minutes of waiting do not add three minutes to the run; their report follows."""
    pytest = [str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if args:
        print("$ python -m pytest", " ".join(args), flush=True)
        return subprocess.run([*pytest, *args], cwd=ROOT).returncode
    side_log = ROOT / ".pytest-waits.log"
    print("$ python -m pytest -m waits  (beside the rest; its report follows)", flush=True)
    with open(side_log, "wb") as log:
        side = subprocess.Popen(
            [*pytest, "-m", "waits"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        print('$ python -m pytest -m "not waits"', flush=True)
        rc = subprocess.run([*pytest, "-m", "not waits"], cwd=ROOT).returncode
        side_rc = side.wait()
    finally:
        if side.poll() is None:
            side.kill()
    print("\n---------- the tests marked waits (run beside the rest) ----------", flush=True)
    sys.stdout.write(side_log.read_text(encoding="utf-8", errors="replace"))
    sys.stdout.flush()
    side_log.unlink(missing_ok=True)
    return rc or side_rc


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test", "run"):
        print(__doc__.strip(), file=sys.stderr)
        print(
            "\nusage: python3 dev.py demo [options] | test [pytest args] | run ARGS...",
            file=sys.stderr,
        )
        return 2
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "test":
        ensure_env("test,train")  # train: the test that retrains the fixture model
        return run_tests(rest)
    ensure_env("test")
    cmd = (
        [str(BIN / "floorconsole"), "demo", *rest]
        if what == "demo"
        else [str(BIN / "floorconsole"), *rest]
    )
    os.execv(cmd[0], cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
