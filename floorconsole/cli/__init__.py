"""Command line: argument parsing and dispatch; the console (Textual) is imported lazily.

The package holds the commands' text and parsers (snapshot, users, audit, model, args); the
engine imports nothing from it. `python -m floorconsole.cli` runs main() (cli/__main__.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from floorconsole import __version__
from floorconsole.core.config import PlantError, Problem, load_plant

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_PLANT = REPO_ROOT / "fixtures" / "plants" / "demo.toml"
# The demo's OPC UA machine beside the Modbus drive (added by `floorconsole demo`; tests that
# build the demo from demo.toml alone keep their one-machine plant).
DEMO_PRESS = REPO_ROOT / "fixtures" / "plants" / "demo_press.toml"


class UserError(Exception):
    """A mistake the user can fix: printed as one line, no traceback, exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        if _ENDED:
            logging.shutdown()
            sys.stdout.flush()
            os._exit(code)
        return code
    except UserError as e:
        print(f"floorconsole: {e}", file=sys.stderr)
        return 1
    except PlantError as e:
        for p in e.problems:
            print(f"{e.source}: {p}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `floorconsole history ... | head`: the reader went away; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    from floorconsole.cli.args import CommandParser, add_data_dir_options

    p = CommandParser(
        prog="floorconsole",
        description="A plant-floor console: live Modbus TCP and MQTT signals with quality, "
        "a local historian, and a console that works over SSH and offline.",
    )
    p.add_argument("--version", action="version", version=f"floorconsole {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    d = sub.add_parser(
        "demo",
        help="simulated plant + engine + console; no set-up",
        description="Start a simulated motor plant (Modbus TCP drive and MQTT "
        "vibration sensor), the engine and the console in one go.",
    )
    _console_options(d)
    d.add_argument(
        "--data-dir",
        type=Path,
        help="where the demo keeps its history (default: ~/.local/state/floorconsole/demo)",
    )
    d.add_argument(
        "--headless",
        action="store_true",
        help="run without the console (engine and simulator only) until Ctrl-C",
    )
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "run",
        help="engine + console, or engine only with --headless",
        description="Run the engine on a plant file, with a console attached "
        "(default) or headless as a service.",
    )
    r.add_argument("-c", "--config", required=True, type=Path, metavar="PLANT.toml")
    r.add_argument("--headless", action="store_true", help="engine only, no console")
    r.add_argument("--data-dir", type=Path, help="override [edge].data_dir")
    _console_options(r)
    r.set_defaults(func=cmd_run)

    a = sub.add_parser(
        "attach",
        help="a console on the engine already running on this box",
        description="Open a console on a running engine (floorconsole run "
        "--headless, or another console's engine) over its local "
        "socket, DATA_DIR/engine.sock. Any number of consoles may "
        "attach, each with its own user.",
    )
    add_data_dir_options(a)
    a.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="the engine's socket (default DATA_DIR/engine.sock)",
    )
    _console_options(a)
    a.set_defaults(func=cmd_attach)

    c = sub.add_parser(
        "check",
        help="validate a plant file; every problem with its key path",
        description="Validate a plant file and report every problem found, each "
        "with its key path and what was expected. Exit status 1 if "
        "there are problems.",
    )
    c.add_argument("plant", type=Path, metavar="PLANT.toml")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser(
        "sim",
        help="the simulated motor plant alone",
        description="Run the simulated motor plant: a Modbus TCP drive on "
        "127.0.0.1 and a vibration sensor publishing to MQTT.",
    )
    s.add_argument("--port", type=int, default=5020, help="Modbus TCP port (default 5020)")
    s.add_argument(
        "--mqtt-host", default=None, help="broker to publish to (default: start a local one)"
    )
    s.add_argument("--mqtt-port", type=int, default=1883)
    s.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND",
        help="inject a fault from the start (repeatable): imbalance, bearing, "
        "misalignment, sensor_drift, stuck_sensor, dropout",
    )
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_sim)

    h = sub.add_parser(
        "history",
        help="read the historian (works while the engine runs)",
        description="Print recorded samples of one or more signals.",
    )
    h.add_argument("signals", nargs="+", metavar="SIGNAL")
    add_data_dir_options(h)
    h.add_argument(
        "--since",
        default="10m",
        help="start: a duration back from now (10m, 2h, 1d) or an ISO time (default 10m)",
    )
    h.add_argument(
        "--until", default=None, help="end: a duration back from now or an ISO time (default now)"
    )
    h.add_argument("--format", choices=("csv", "json"), default="csv")
    h.add_argument(
        "--quality",
        action="store_true",
        help="export the quality changes instead of the values: when each signal turned "
        "GOOD, UNCERTAIN or BAD, and why",
    )
    h.add_argument(
        "--timezone",
        metavar="ZONE",
        help="zone of the printed times, with their offset (default: the plant file's "
        "[edge] timezone, else UTC)",
    )
    h.set_defaults(func=cmd_history)

    sn = sub.add_parser(
        "snapshot",
        help="configuration snapshots: list, show, diff, rollback, export, import, at TIME",
        description="Every configuration that ran on this box, model included.",
    )
    snsub = sn.add_subparsers(metavar="ACTION")
    for name, helptext, params in (
        ("list", "every snapshot; the active one marked", ()),
        ("show", "a snapshot as a plant file, with its models", ("ID",)),
        ("diff", "what changed between two snapshots, in plant words", ("A", "B")),
        ("rollback", "make an earlier snapshot the one that runs (engine stopped)", ("ID",)),
        ("export", "write a snapshot as a plant file plus model packages", ("ID", "DIR")),
        ("import", "store an exported bundle as a snapshot (checked for tampering)", ("DIR",)),
        ("at", "which snapshot ran at a past time (10m, 2h, or an ISO time)", ("TIME",)),
    ):
        sp = snsub.add_parser(name, help=helptext, description=helptext)
        for prm in params:
            sp.add_argument(prm.lower())
        add_data_dir_options(sp)
        sp.set_defaults(func=cmd_snapshot, action=name)

    m = sub.add_parser(
        "model",
        help="edge model packages",
        description="Look into a model package (NAME.onnx beside NAME.json).",
    )
    msub = m.add_subparsers(metavar="ACTION")
    mi = msub.add_parser(
        "inspect",
        help="inputs, outputs, features, thresholds, reference, sha256",
        description="Print what a model package holds and check that its ONNX "
        "file matches its sidecar.",
    )
    mi.add_argument("package", type=Path, metavar="FILE", help="NAME, NAME.onnx or NAME.json")
    mi.set_defaults(func=cmd_model_inspect)
    _model_recalibration_parsers(msub)

    from floorconsole.cli import audit as audit_cli
    from floorconsole.cli import fleet as fleet_cli
    from floorconsole.cli import opcua as opcua_cli
    from floorconsole.cli import users as users_cli

    users_cli.add_parser(sub).set_defaults(func=cmd_users)
    audit_cli.add_parser(sub)
    opcua_cli.add_parser(sub)
    fleet_cli.add_parser(sub)

    from floorconsole import serve

    serve.add_parser(sub)
    return p


def _console_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--theme", default="isa101", help="isa101 (default), dark, high-contrast")
    p.add_argument(
        "--refresh",
        type=float,
        default=4.0,
        metavar="HZ",
        help="console refresh rate in Hz (default 4; lower it on slow links)",
    )
    p.add_argument(
        "--kiosk",
        action="store_true",
        help="HMI panel mode: no quit, suspend or shell escape; starts locked to "
        "viewer; only an admin PIN leaves it",
    )
    p.add_argument(
        "--annunciate",
        choices=("off", "low", "medium", "high", "critical"),
        default=None,
        metavar="PRIORITY|off",
        help="ring the terminal bell and flash the banner for a new alarm at or above this "
        "priority until acknowledged (! silences the bell); default high in kiosk mode, "
        "else off",
    )


# -- commands -----------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    env = _environment_problems(args.plant)
    try:
        plant = load_plant(args.plant)  # package problems too: check is where to see them
    except PlantError as e:
        problems = [*e.problems, *env]
        for p in problems:
            print(f"{e.source}: {p}")
        print(f"{len(problems)} problem(s) in {e.source}", file=sys.stderr)
        return 1
    if env:
        # The file is valid, and an engine would run it, that device BAD until the variable
        # is set: check says so now rather than the console later.
        for p in env:
            print(f"{args.plant}: {p}")
        print(f"{len(env)} problem(s) in {args.plant}", file=sys.stderr)
        return 1
    print(
        f"{args.plant}: ok — edge {plant.edge.id}, {len(plant.brokers)} broker(s), "
        f"{len(plant.devices)} device(s), {len(plant.signals)} signal(s), "
        f"{len(plant.models)} model(s)"
    )
    return 0


def _environment_problems(path: Path) -> list[Problem]:
    """What this machine's environment lacks for the plant file (an OPC UA password
    variable that is not set)."""
    import tomllib

    from floorconsole.core.opcua import environment_problems

    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # load_plant says what is wrong with the file
    return [Problem(k, m) for k, m in environment_problems(raw, os.environ)]


def _data_dir(args: argparse.Namespace, *, demo_fallback: bool = False) -> Path:
    from floorconsole.cli.args import data_dir_of

    return data_dir_of(args, UserError, demo_fallback=demo_fallback)


def cmd_snapshot(args: argparse.Namespace) -> int:
    from floorconsole.cli import snapshot as sc

    data_dir = _data_dir(
        args, demo_fallback=args.action in ("list", "show", "diff", "at", "export")
    )
    try:
        if args.action == "list":
            out = sc.snapshot_list(data_dir)
        elif args.action == "show":
            out = sc.snapshot_show(data_dir, args.id)
        elif args.action == "diff":
            out = sc.snapshot_diff(data_dir, args.a, args.b)
        elif args.action == "export":
            out = sc.snapshot_export(data_dir, args.id, Path(args.dir))
        elif args.action == "import":
            out = sc.snapshot_import(data_dir, Path(args.dir))
        elif args.action == "at":
            out = sc.snapshot_at(data_dir, args.time)
        else:
            out = _offline_rollback(data_dir, args.id)
    except sc.SnapshotCommandError as e:
        raise UserError(str(e)) from None
    print(out)
    return 0


def _offline_rollback(data_dir: Path, ref: str) -> str:
    """With no engine running: the earlier snapshot becomes the active one, and the next
    start runs it (and health-checks it). A running engine rolls back from its console."""
    import getpass

    from floorconsole.cli import snapshot as sc
    from floorconsole.engine.lock import DataDirLock, EngineAlreadyRunning

    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except EngineAlreadyRunning as e:
        raise UserError(f"{e}. Roll back from its console (F5, then r) while it runs") from None
    try:
        snap = sc.request_rollback(data_dir, ref)
        with sc.open_store(data_dir) as store:
            store.record_activation(
                snap.id,
                "rolled-back",
                by=getpass.getuser(),
                note="offline rollback from the command line",
            )
        return (
            f"snapshot {snap.short} is active; the engine runs it at its next start "
            "(a plant file whose content is new still takes over)"
        )
    finally:
        lock.release()


def cmd_model_inspect(args: argparse.Namespace) -> int:
    from floorconsole.cli.model import inspect_package
    from floorconsole.core.model_package import PackageError

    try:
        print(inspect_package(args.package))
    except PackageError as e:
        print(f"floorconsole: {e}", file=sys.stderr)
        return 1
    return 0


def _model_recalibration_parsers(msub: Any) -> None:
    """model calibrate | shadow | promote: recalibration at the box (cli/model.py)."""
    from floorconsole.cli.args import add_data_dir_options

    mc = msub.add_parser(
        "calibrate",
        help="a candidate package from a healthy window of recorded history",
        description="Build a candidate model package (scaler, thresholds, drift reference and, "
        "with --train-weights, new autoencoder weights) from a window of the history marked "
        "healthy. Reads the history file, so it works beside a running engine; the candidate "
        "goes to DATA_DIR/candidates/.",
    )
    mc.add_argument(
        "--from",
        dest="since",
        required=True,
        metavar="TIME",
        help="start: an ISO time (UTC unless it says) or a duration back (2h)",
    )
    mc.add_argument(
        "--to", dest="until", default="0s", metavar="TIME", help="end, as --from (default: now)"
    )
    mc.add_argument("--model", help="the [[models]] id (needed when there are several)")
    mc.add_argument(
        "--train-weights",
        action="store_true",
        help="train new autoencoder weights here (seconds), not only the scaler",
    )
    mc.add_argument("--seed", type=int, help="training seed (same window and seed: same bytes)")
    add_data_dir_options(mc)
    mc.set_defaults(func=cmd_model_calibrate)

    def engine_user(p: argparse.ArgumentParser) -> None:
        add_data_dir_options(p)
        p.add_argument(
            "--user",
            required=True,
            help="who acts (an engineer); the PIN is asked for, or read from FLOORCONSOLE_PIN",
        )

    ms = msub.add_parser(
        "shadow",
        help="run a candidate beside the live model (start | stop | status)",
        description="On the running engine: a candidate scores beside the live model on the "
        "same windows, its outputs recorded as MODEL.shadow.*, with no effect on rules.",
    )
    ms.add_argument("op", choices=("start", "stop", "status"))
    ms.add_argument("--model", required=True, help="the [[models]] id")
    ms.add_argument(
        "--candidate",
        metavar="PATH",
        default="",
        help="the candidate package (NAME without suffix; default the last built)",
    )
    engine_user(ms)
    ms.set_defaults(func=cmd_model_shadow)

    mp = msub.add_parser(
        "promote",
        help="make the shadowed candidate the live model (a new snapshot)",
        description="On the running engine: the candidate shadowing MODEL becomes its package, "
        "as a snapshot applied and health-checked like any change (engineer, PIN, reason, "
        "audit); `floorconsole snapshot list` shows it and rollback brings the previous back.",
    )
    mp.add_argument("--model", required=True, help="the [[models]] id")
    mp.add_argument("-m", "--message", required=True, help="why (kept in the audit trail)")
    engine_user(mp)
    mp.set_defaults(func=cmd_model_promote)


def _pin() -> str:
    import getpass

    pin = os.environ.get("FLOORCONSOLE_PIN")
    return pin if pin is not None else getpass.getpass("PIN: ")


def cmd_model_calibrate(args: argparse.Namespace) -> int:
    from floorconsole.cli.args import data_dir_of
    from floorconsole.cli.model import ModelCommandError, calibrate_from_history
    from floorconsole.cli.snapshot import SnapshotCommandError, parse_when

    data_dir = data_dir_of(args, UserError)
    now = time.time()
    try:
        since, until = parse_when(args.since, now), parse_when(args.until, now)
        print(
            f"floorconsole: calibrating from {data_dir / 'history.db'}", file=sys.stderr, flush=True
        )
        out = calibrate_from_history(
            data_dir,
            since,
            until,
            model=args.model,
            train_weights=args.train_weights,
            seed=args.seed,
            progress=sys.stderr,
        )
    except (ModelCommandError, SnapshotCommandError) as e:
        raise UserError(str(e)) from None
    print(out)
    return 0


def cmd_model_shadow(args: argparse.Namespace) -> int:
    from floorconsole.cli.args import data_dir_of
    from floorconsole.cli.model import (
        ModelCommandError,
        comparison_text,
        end_session,
        engine_session,
        run_on_engine,
    )

    data_dir = data_dir_of(args, UserError)
    try:
        if args.op == "status":
            api, session = engine_session(data_dir, args.user, _pin())
            try:
                print(comparison_text(api.model_comparison(args.model)))
            finally:
                end_session(api, session)
            return 0
        extra = {"candidate": str(Path(args.candidate).resolve())} if args.candidate else {}
        ok, text = run_on_engine(
            data_dir, args.user, _pin(), "model.shadow", model=args.model, op=args.op, **extra
        )
    except ModelCommandError as e:
        raise UserError(str(e)) from None
    print(text if ok else f"floorconsole: {text}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_model_promote(args: argparse.Namespace) -> int:
    from floorconsole.cli.args import data_dir_of
    from floorconsole.cli.model import ModelCommandError, run_on_engine

    data_dir = data_dir_of(args, UserError)
    print("floorconsole: promoting (applied, then health-checked)...", file=sys.stderr, flush=True)
    try:
        ok, text = run_on_engine(
            data_dir,
            args.user,
            _pin(),
            "model.promote",
            take_control=True,
            model=args.model,
            message=args.message,
        )
    except ModelCommandError as e:
        raise UserError(str(e)) from None
    print(text if ok else f"floorconsole: {text}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    # Refuse a broken file before anything is stored; a model package that cannot be used is
    # not the file's text: the engine runs that model from a stored copy, or BAD, and says so.
    packages: list[Problem] = []
    plant = load_plant(args.config, package_problems=packages)
    for p in packages:
        print(f"floorconsole: warning: {args.config}: {p}", file=sys.stderr)
    data_dir = Path(args.data_dir or plant.edge.data_dir)
    return _run_engine(
        data_dir,
        headless=args.headless,
        args=args,
        plant_file=args.config,
        base_dir=Path(args.config).resolve().parent,
    )


def _exit_on_hangup() -> None:
    """SIGTERM or a closed terminal (SIGHUP) ends the demo through its cleanup, so the broker
    and simulator it started do not outlive it."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def cmd_demo(args: argparse.Namespace) -> int:
    from floorconsole.cli.args import demo_data_dir
    from floorconsole.engine.demo import DemoPlant
    from floorconsole.engine.lock import DataDirLock, EngineAlreadyRunning

    _exit_on_hangup()
    data_dir = Path(args.data_dir or demo_data_dir())
    # Refuse before anything starts: a second demo on a directory in use used to start the
    # simulated plant (its servers failing on the first one's ports) and only then be turned
    # away by the engine. Held while the plant starts, handed to the engine just before.
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except EngineAlreadyRunning as e:
        raise UserError(str(e)) from None
    try:
        with DemoPlant(DEMO_PLANT, machines=[DEMO_PRESS]) as demo:
            print(demo.banner(data_dir), file=sys.stderr)
            lock.release()
            return _run_engine(
                data_dir,
                headless=args.headless,
                args=args,
                plant_raw=demo.plant.raw,
                base_dir=DEMO_PLANT.parent,
                source="demo plant",
                demo=demo.sim,
            )
    finally:
        lock.release()


def cmd_sim(args: argparse.Namespace) -> int:
    from floorconsole.adapters.sim import run_sim_cli

    return run_sim_cli(
        port=args.port,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        faults=args.fault,
        seed=args.seed,
    )


def _run_engine(
    data_dir: Path,
    *,
    headless: bool,
    args: argparse.Namespace,
    base_dir: Path,
    plant_file: Path | None = None,
    plant_raw: dict[str, object] | None = None,
    source: str = "",
    demo: Any = None,
) -> int:
    import getpass

    from floorconsole.engine.bootstrap import StartupError, open_engine
    from floorconsole.engine.lock import EngineAlreadyRunning

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        engine = open_engine(
            data_dir=data_dir,
            base_dir=base_dir,
            user=getpass.getuser(),
            plant_file=plant_file,
            plant_raw=plant_raw,
            source=source,
            demo=demo,
        )
    except EngineAlreadyRunning as e:
        raise UserError(str(e)) from None
    except StartupError as e:
        raise UserError(str(e)) from None
    if headless:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            engine.run_forever()
        except EngineAlreadyRunning as e:
            raise UserError(str(e)) from None
        return 0
    # Under a console the terminal belongs to Textual: the engine logs to a file.
    logging.basicConfig(
        level=logging.INFO,
        filename=str(data_dir / "engine.log"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        engine.start_background()
    except EngineAlreadyRunning as e:
        raise UserError(str(e)) from None
    try:
        from floorconsole.ui.app import make_app

        kiosk = {"kiosk": True} if args.kiosk else {}
        app = make_app(
            engine.api,
            theme=args.theme,
            refresh_hz=args.refresh,
            owns_engine=True,
            annunciate=args.annunciate,
            **kiosk,
        )
        app.run()
    finally:
        engine.stop()
    return _ended(app)


def cmd_attach(args: argparse.Namespace) -> int:
    from floorconsole.engine.attach import socket_path
    from floorconsole.engine.remote import EngineRefused, EngineUnreachable, RemoteAPI

    path = Path(args.socket) if args.socket else socket_path(_data_dir(args, demo_fallback=True))
    # The terminal belongs to Textual, and the engine keeps its own log: say nothing here.
    logging.basicConfig(handlers=[logging.NullHandler()])
    api = RemoteAPI(path, refresh_hz=args.refresh)
    try:
        api.connect()
    except EngineRefused as e:
        raise UserError(str(e)) from None
    except EngineUnreachable as e:
        why = str(e).split(": ", 1)[-1]
        raise UserError(
            f"no engine at {path} ({why}): start one with floorconsole run "
            "--headless -c PLANT.toml (or floorconsole demo)"
        ) from None
    try:
        from floorconsole.ui.app import make_app

        kiosk = {"kiosk": True} if args.kiosk else {}
        app = make_app(
            api, theme=args.theme, refresh_hz=args.refresh, annunciate=args.annunciate, **kiosk
        )
        app.run()
    finally:
        api.close()
    return _ended(app)


_ENDED: list[int] = []  # the exit status of a console that ended on its own (see _ended)


def _ended(app: object) -> int:
    """0, or the status of a console ended by SIGTERM or by its terminal going away, noted
    for main(): once every cleanup has run (the engine stopped, the demo's broker too) it
    leaves at once, since the interpreter's own teardown can take another half second on a
    loaded box and the promise is 2 s."""
    if not getattr(app, "ending", ""):
        return 0
    code = int(getattr(app, "return_code", None) or 1)
    _ENDED.append(code)
    return code


def cmd_users(args: argparse.Namespace) -> int:
    """`users ...`: a change is recorded in the audit trail of the same data directory before
    it is made (and is not made when that fails), and its result after."""
    import getpass

    from floorconsole.adapters.audit_log import AuditLog
    from floorconsole.cli import users as users_cli

    action = getattr(args, "users_action", None)
    if action in ("add", "remove", "reset-pin"):
        try:
            by = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name in a container
            by = "unknown"
        detail: dict[str, object] = {
            "phase": "request",
            "by": by,
            "change": f"user.{action.replace('-', '_')}",
        }
        if action == "add":
            detail["role"] = args.role
        try:
            with AuditLog.in_data_dir(_data_dir(args)) as audit:
                audit.append("user_change", by, args.name, detail)
        except Exception as e:  # noqa: BLE001 - no record, no change
            raise UserError(f"nothing changed: the audit trail cannot be written ({e})") from None

    def audited(kind: str, name: str, detail: dict[str, object]) -> None:
        with AuditLog.in_data_dir(_data_dir(args)) as audit:
            audit.append(
                "user_change",
                str(detail.get("by", "")),
                name,
                {"phase": "result", "change": kind, **detail},
            )

    return users_cli.run(args, on_change=audited)


def parse_when(text: str, now: float) -> float:
    """'10m' (back from now) or an ISO 8601 time -> epoch seconds."""
    from floorconsole.cli.snapshot import SnapshotCommandError
    from floorconsole.cli.snapshot import parse_when as parse

    try:
        return parse(text, now)
    except SnapshotCommandError as e:
        raise UserError(str(e)) from None


def cmd_history(args: argparse.Namespace) -> int:
    from floorconsole.adapters.historian import HistoryReader
    from floorconsole.cli.args import closest_names, data_dir_of, zone_of
    from floorconsole.core.config import zone_problem

    data_dir = data_dir_of(args, UserError, demo_fallback=True)
    zone = zone_of(args)  # the plant file's [edge] timezone with -c, else UTC
    if args.timezone:
        if zone_problem(args.timezone):
            raise UserError(f"--timezone: {zone_problem(args.timezone)}")
        zone = args.timezone
    db = data_dir / "history.db"
    if not db.exists():
        raise UserError(f"no historian at {db}: has an engine run with this data directory?")
    now = time.time()
    since = parse_when(args.since, now)
    until = parse_when(args.until, now) if args.until else now
    if since >= until:
        raise UserError(f"--since ({args.since}) must be before --until ({args.until or 'now'})")
    reader = HistoryReader(db)
    known = reader.signals()
    missing = [s for s in dict.fromkeys(args.signals) if s not in known]
    if missing:
        raise UserError(
            "; ".join(
                f"no history for {s!r} in {db}: {closest_names(s, known, kind='recorded signals')}"
                for s in missing
            )
        )
    export = reader.export_quality if args.quality else reader.export
    export(args.signals, since, until, args.format, sys.stdout, timezone=zone)
    return 0
