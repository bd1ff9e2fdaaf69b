"""`floorconsole fleet`: every edge on the plant broker (no local engine needed), one edge's
detail, which snapshot ran where at a time (or since when it was offline), a staged rollout
(canary first, health-gated waves, rollback of the updated edges when a later wave fails),
decommissioning an edge (its broker login revoked), the tool's own trail, and keys to sign
bundles."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floorconsole.core.config import BrokerConfig, TLSConfig
from floorconsole.core.fleet import (
    DEFAULT_PREFIX,
    FleetState,
    RolloutCommand,
    at_text,
    command_payload,
    detail_text,
    list_text,
    plan_waves,
)
from floorconsole.core.units import parse_duration

FINAL = ("refused", "applied", "failed", "rolled-back", "unchanged", "pending", "deferred")
HELD = ("pending", "deferred")  # waiting for an engineer at the edge: not a failure


def default_data_dir() -> Path:
    """Where the fleet tool keeps its trail unless --data-dir says otherwise."""
    env = os.environ.get("FLOORCONSOLE_FLEET_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "floorconsole" / "fleet"


class FleetError(ValueError):
    """A fleet command that cannot be done; one line for the user."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    f = subparsers.add_parser(
        "fleet",
        help="every edge on the plant broker; staged rollouts; what ran where, when",
        description="The fleet as the plant broker sees it: each edge's retained status, "
        "activation log and rollout results. Needs no local engine.",
    )
    fsub = f.add_subparsers(metavar="ACTION")
    specs: list[tuple[str, str, tuple[str, ...]]] = [
        ("list", "every edge: online, last seen, snapshot, backlog, alarms, model", ()),
        ("show", "one edge with its activation history", ("EDGE",)),
        ("at", "which snapshot each edge ran at a time (10m, 2h, or an ISO time)", ("TIME",)),
        ("rollout", "a signed bundle to the fleet: canary first, then waves", ("BUNDLE",)),
        ("view", "the fleet in a terminal screen (80x24 and up)", ()),
        ("decommission", "revoke an edge's broker login; no further rollout to it", ("EDGE",)),
        ("audit", "the fleet tool's own trail: every rollout step, every decommission", ()),
        ("keygen", "a new signing key pair NAME.pem (private) and NAME.pub", ("NAME",)),
        ("sign", "sign an exported bundle with a private key", ("BUNDLE",)),
    ]
    for name, helptext, params in specs:
        sp = fsub.add_parser(name, help=helptext, description=helptext)
        for prm in params:
            sp.add_argument(prm.lower())
        if name not in ("keygen", "sign", "audit"):
            _broker_options(sp)
        if name in ("rollout", "decommission", "audit"):
            sp.add_argument(
                "--data-dir",
                type=Path,
                default=None,
                help="the tool's trail (default $FLOORCONSOLE_FLEET_DIR or "
                "~/.local/state/floorconsole/fleet)",
            )
        if name == "decommission":
            sp.add_argument(
                "--client",
                help="the edge's broker username in the dynamic security plugin (default: EDGE)",
            )
            sp.add_argument("--why", default="", help="why, for the trail")
            sp.add_argument("--by", default=getpass.getuser(), help="who, for the trail")
        if name == "audit":
            sp.add_argument("--rollout", help="only this rollout's steps")
            sp.add_argument("--limit", type=int, default=200, help="the last N steps")
            sp.add_argument("--format", choices=("text", "json"), default="text")
        if name in ("list", "view", "rollout"):
            sp.add_argument("--site", help="only edges of this site")
            sp.add_argument("--tag", action="append", default=[], help="only edges with it")
        if name == "list":
            sp.add_argument("--group", choices=("site", "tag"), help="group the list")
            sp.add_argument("--format", choices=("text", "json"), default="text")
        if name == "rollout":
            sp.add_argument("--edges", help="only these edges (comma-separated)")
            sp.add_argument("--canary", required=True, help="edge(s) first, comma-separated")
            sp.add_argument("--waves", default="", help="then waves: counts or shares, 1,50%%")
            sp.add_argument("--soak", default="10s", help="healthy this long before the next")
            sp.add_argument("--timeout", default="2m", help="wait this long for a wave's results")
            sp.add_argument(
                "--max-failures", type=int, default=0, help="failed edges tolerated after canary"
            )
            sp.add_argument("--by", default=getpass.getuser(), help="who, for the audit")
            sp.add_argument("--trail", help="the tool's own audit trail (JSON lines)")
        if name == "sign":
            sp.add_argument("--key", required=True, help="the private key (PEM)")
            sp.add_argument("--signer", default=getpass.getuser())
        sp.set_defaults(func=run, fleet_action=name)
    f.set_defaults(func=run, fleet_action="list", site=None, tag=[], group=None, format="text")
    _broker_options(f)
    return f


def _broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker",
        default=os.environ.get("FLOORCONSOLE_FLEET_BROKER", "127.0.0.1:1883"),
        help="the plant broker HOST:PORT (default $FLOORCONSOLE_FLEET_BROKER or 127.0.0.1:1883)",
    )
    p.add_argument("--username")
    p.add_argument("--password-env", help="the environment variable holding the password")
    p.add_argument("--ca", help="TLS: the CA certificate")
    p.add_argument("--cert", help="TLS: this client's certificate")
    p.add_argument("--key-file", dest="tls_key", help="TLS: this client's key")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="the fleet's topic prefix")


def broker_of(args: argparse.Namespace) -> BrokerConfig:
    host, _, port = str(args.broker).rpartition(":")
    if not host:
        host, port = port, "1883"
    try:
        p = int(port)
    except ValueError:
        raise FleetError(f"--broker {args.broker!r}: expected HOST:PORT") from None
    tls = None
    if args.ca or args.cert or args.tls_key:
        tls = TLSConfig(
            ca=Path(args.ca) if args.ca else None,
            cert=Path(args.cert) if args.cert else None,
            key=Path(args.tls_key) if args.tls_key else None,
        )
    return BrokerConfig(
        id="plant",
        host=host,
        port=p,
        username=args.username,
        password_env=args.password_env,
        tls=tls,
    )


def connect(args: argparse.Namespace) -> Any:
    from floorconsole.adapters.fleet import FleetClient

    client = FleetClient(broker_of(args), prefix=args.prefix)
    try:
        client.connect()
    except ConnectionError as e:
        raise FleetError(str(e)) from None
    client.settle()
    return client


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except FleetError as e:
        print(f"floorconsole fleet: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    action = args.fleet_action
    if action == "keygen":
        from floorconsole.adapters.bundle_signing import generate_key

        kid = generate_key(Path(args.name + ".pem"), Path(args.name + ".pub"))
        print(
            f"key {kid}: {args.name}.pem (private, keep it off the edges), {args.name}.pub "
            "(copy it into each edge's [fleet] trusted_keys folder)"
        )
        return 0
    if action == "sign":
        from floorconsole.adapters.bundle_signing import SignatureError, load_private, sign_bundle
        from floorconsole.adapters.snapshot_store import BundleError

        try:
            sig = sign_bundle(Path(args.bundle), load_private(Path(args.key)), args.signer)
        except (SignatureError, BundleError) as e:
            raise FleetError(str(e)) from None
        print(f"signed {args.bundle} with key {sig['key_id']} as {args.signer}")
        return 0
    if action == "audit":
        return _audit(args)
    if action == "decommission":
        return _decommission(args)
    if action == "view":
        from floorconsole.ui.fleet import run_fleet_view

        client = connect(args)
        try:
            run_fleet_view(client.state, client.lock, site=args.site, tags=args.tag)
        finally:
            client.close()
        return 0
    client = connect(args)
    try:
        now = time.time()
        with client.lock:
            state: FleetState = client.state
            if action == "list":
                rows = state.rows(site=args.site, tags=args.tag)
                if args.format == "json":
                    print(json.dumps([s.as_dict() for s in state.status.values()], indent=1))
                else:
                    print(list_text(rows, now, group=args.group))
                return 0
            if action == "show":
                print(detail_text(state, args.edge, now))
                return 0 if args.edge in state.status else 1
            if action == "at":
                from floorconsole.cli.snapshot import SnapshotCommandError, parse_when

                try:
                    when = parse_when(args.time, now)
                except SnapshotCommandError as e:
                    raise FleetError(str(e)) from None
                print(at_text(state, when))
                return 0
        # rollout
        report = rollout(
            client,
            Path(args.bundle),
            canary=_split(args.canary),
            waves=_split(args.waves),
            edges=_split(args.edges or ""),
            site=args.site,
            tags=args.tag,
            soak_s=parse_duration(args.soak),
            timeout_s=parse_duration(args.timeout),
            max_failures=args.max_failures,
            by=args.by,
            trail=Path(args.trail) if args.trail else None,
            say=_say,
            records=_trail(args),
        )
        return 0 if report.ok else 1
    finally:
        client.close()


def _trail(args: argparse.Namespace) -> Any:
    from floorconsole.adapters.fleet_trail import FleetTrail, FleetTrailError

    try:
        return FleetTrail.in_dir(args.data_dir or default_data_dir())
    except FleetTrailError as e:
        raise FleetError(str(e)) from None


def _audit(args: argparse.Namespace) -> int:
    from floorconsole.core.fleet import utc

    with _trail(args) as records:
        steps = records.steps(rollout=args.rollout, limit=args.limit)
        gone = records.decommissioned()
    if args.format == "json":
        print(json.dumps({"steps": steps, "decommissioned": gone}, indent=1))
        return 0
    if not steps:
        print(f"no step in the fleet trail {records.path} yet")
    for st in steps:
        detail = ", ".join(f"{k}={_short(v)}" for k, v in st["detail"].items())
        print(
            f"{utc(st['t'])}  {st['rollout'] or '-':<28} {st['by'][:12]:<12} "
            f"{st['step']:<13} {st['edge'] or '-':<12} {detail}".rstrip()
        )
    for edge, d in gone.items():
        print(f"decommissioned {edge} at {utc(d['t'])} UTC by {d['by']}: {d['why'] or '-'}")
    return 0


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


def _decommission(args: argparse.Namespace) -> int:
    """Revoke the edge's broker login (deleteClient in mosquitto's dynamic security plugin:
    the broker drops it and refuses it from then on), clear the rollout command retained for
    it, and mark it decommissioned in the tool's trail (a later rollout leaves it out)."""
    from floorconsole.adapters.fleet import DynsecError, dynsec
    from floorconsole.core.fleet import topic

    edge, client_name = args.edge, args.client or args.edge
    broker = broker_of(args)
    with _trail(args) as records:
        try:
            dynsec(broker, [{"command": "deleteClient", "username": client_name}])
        except (ConnectionError, DynsecError, TimeoutError) as e:
            records.record(
                "decommission failed", by=args.by, edge=edge, why=str(e), client=client_name
            )
            raise FleetError(f"{edge} not decommissioned: {e}") from None
        client = connect(args)
        try:
            client.retain(topic(args.prefix, edge, "rollout"))
            # the broker drops it without its last will: its status says so in its place
            with client.lock:
                last = client.state.status.get(edge)
            doc = last.as_dict() if last is not None else {"edge": edge}
            doc.update(state="offline", t=time.time(), will=False)
            doc["decommissioned"] = {"by": args.by, "why": args.why}
            client.retain(topic(args.prefix, edge, "status"), json.dumps(doc).encode())
        finally:
            client.close()
        records.decommission(edge, by=args.by, why=args.why, client=client_name)
    print(
        f"{edge} decommissioned: broker login {client_name!r} deleted (the broker refuses it "
        "from now on), no rollout command left for it, its status says offline, marked in "
        "the fleet trail"
    )
    return 0


def _say(line: str) -> None:
    """A rollout step on a terminal: wrapped to its width, the rest indented under the step
    (an edge's reason can be long; at 80 columns it wrapped mid-word); as is in a pipe."""
    if not sys.stdout.isatty():
        print(line, flush=True)
        return
    width = max(40, shutil.get_terminal_size().columns - 1)
    print(textwrap.fill(line, width, subsequent_indent="    ", break_on_hyphens=False), flush=True)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@dataclass
class RolloutReport:
    rollout: str
    ok: bool = False
    waves: list[list[str]] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # offline: the command waits, retained
    held: dict[str, str] = field(default_factory=dict)  # pending/deferred by an engineer there
    skipped: dict[str, str] = field(default_factory=dict)  # decommissioned: nothing sent
    failed: dict[str, str] = field(default_factory=dict)
    rolled_back: list[str] = field(default_factory=list)
    stopped: str = ""


def rollout(
    client: Any,
    bundle: Path,
    *,
    canary: Sequence[str],
    waves: Sequence[str],
    edges: Sequence[str] = (),
    site: str | None = None,
    tags: Sequence[str] = (),
    soak_s: float = 10.0,
    timeout_s: float = 120.0,
    max_failures: int = 0,
    by: str = "",
    trail: Path | None = None,
    say: Callable[[str], None] = print,
    records: Any = None,
) -> RolloutReport:
    """Canary first, then the waves; each wave waits for its edges' results (an offline edge
    is pending: its retained command waits for it), then soaks; a failed canary stops with
    nothing else touched; more than max_failures in a later wave stops and rolls the updated
    edges back to the snapshot each ran before."""
    from floorconsole.adapters.bundle_signing import SIGNATURE_FILE
    from floorconsole.adapters.fleet import pack_bundle
    from floorconsole.adapters.snapshot_store import BundleError, read_bundle

    try:
        _config, _files, meta = read_bundle(bundle)
    except BundleError as err:
        raise FleetError(str(err)) from None
    if not (bundle / SIGNATURE_FILE).is_file():
        raise FleetError(f"{bundle}: not signed; `floorconsole fleet sign {bundle} --key K`")
    bundle_id = meta["id"]
    rid = f"{bundle_id[:12]}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    report = RolloutReport(rid)

    def note(step: str, **detail: Any) -> None:
        if records is not None:  # the tool's own trail (adapters.fleet_trail)
            edge = str(detail.pop("edge", "")) if "edge" in detail else ""
            records.record(step, rollout=rid, by=by, edge=edge, **detail)
            if edge:
                detail["edge"] = edge
        if trail is not None:
            trail.parent.mkdir(parents=True, exist_ok=True)
            with trail.open("a", encoding="utf-8") as f:
                rec = {"t": time.time(), "rollout": rid, "by": by, "step": step, **detail}
                f.write(json.dumps(rec) + "\n")

    with client.lock:
        rows = client.state.rows(site=site, tags=tags, edges=edges)
        before = {e: s.snapshot for e, s in client.state.status.items()}
    gone = records.decommissioned() if records is not None else {}
    named = [e for e in [*canary, *edges] if e in gone]
    if named:
        d = gone[named[0]]
        raise FleetError(
            f"{named[0]} was decommissioned ({d['by']}: {d['why'] or 'no reason given'}); "
            "nothing is sent to it"
        )
    targets = [r.edge for r in rows if r.edge not in gone]
    report.skipped = {e: "decommissioned" for e in (r.edge for r in rows) if e in gone}
    try:
        report.waves = plan_waves(targets, canary, waves)
    except ValueError as err:
        raise FleetError(str(err)) from None
    files = pack_bundle(bundle)
    apply = command_payload(RolloutCommand(rid, "apply", files=files, by=by, t=time.time()))
    # the rollout id starts with the bundle's
    say(f"rollout {rid}: {len(targets)} edge(s) in {len(report.waves)} wave(s)")
    for i, wave in enumerate(report.waves):  # one line a wave: it reads at 80 columns
        say(f"  {'canary' if i == 0 and canary else f'wave {i}'}: {', '.join(wave)}")
    if report.skipped:
        say(f"  left out (decommissioned): {', '.join(sorted(report.skipped))}")
    note("start", bundle=bundle_id, waves=report.waves, left_out=sorted(report.skipped))
    for i, wave in enumerate(report.waves):
        name = "canary" if i == 0 and canary else f"wave {i}"
        for e in wave:
            client.send(e, apply)
        note("sent", wave=name, edges=wave)
        is_canary = i == 0 and bool(canary)
        # a canary held by an engineer there is waited for (nothing is proven until it runs)
        results = _wait_results(client, rid, wave, timeout_s, wait_held=is_canary)
        failed_now = []
        for e in wave:
            r = results.get(e)
            if r is None:
                report.pending.append(e)
                say(f"  {name} {e}: pending (offline; the command waits for it)")
            elif r.state in HELD:
                report.pending.append(e)
                report.held[e] = f"{r.state}: {r.message}"
                say(f"  {name} {e}: {r.state} ({r.message})")
            elif r.ok:
                report.updated.append(e)
                say(f"  {name} {e}: {r.state} ({r.message})")
            else:
                report.failed[e] = f"{r.state}: {r.message}"
                failed_now.append(e)
                say(f"  {name} {e}: FAILED {r.state}: {r.message}")
            note("result", wave=name, edge=e, result=None if r is None else r.as_dict())
        held = [e for e in wave if e in report.held]
        if is_canary and held and not failed_now:
            report.stopped = (
                f"canary {', '.join(held)} not applied: {report.held[held[0]]}; "
                "no other edge was sent it"
            )
            say(f"rollout {rid} stopped: {report.stopped}")
            note("stopped", why=report.stopped)
            return report
        if not failed_now and soak_s > 0:
            time.sleep(soak_s)
            with client.lock:
                for e in wave:
                    s = client.state.status.get(e)
                    r = results.get(e)
                    if r is None or not r.ok:
                        continue
                    if s is None or s.state != "online" or s.snapshot != r.snapshot:
                        why = (
                            "went offline"
                            if s is None or s.state != "online"
                            else (f"runs {s.snapshot[:12]}, not {r.snapshot[:12]}")
                        )
                        report.failed[e] = f"during the soak: {why}"
                        failed_now.append(e)
                        say(f"  {name} {e}: FAILED during the soak: {why}")
            note("soaked", wave=name, failed=failed_now)
        limit = 0 if name == "canary" else max_failures
        if len(report.failed) > limit:
            report.stopped = f"{name} failed ({', '.join(failed_now)})"
            say(f"rollout {rid} stopped: {report.stopped}")
            note("stopped", why=report.stopped)
            back = [e for e in report.updated + report.pending if before.get(e)]
            if back:
                _roll_back(client, rid, back, before, timeout_s, by, report, say, note)
            return report
    report.ok = True
    say(
        f"rollout {rid} done: {len(report.updated)} updated"
        + (
            f", {len(report.pending)} pending ({', '.join(report.pending)})"
            if report.pending
            else ""
        )
    )
    note("done", updated=report.updated, pending=report.pending)
    return report


def _wait_results(
    client: Any, rid: str, wave: Sequence[str], timeout_s: float, *, wait_held: bool = False
) -> dict[str, Any]:
    """The final result of each edge of a wave; an edge that is offline is not waited for.
    wait_held: a change pending for an engineer there is waited for too (till the timeout)."""

    def done(state: FleetState) -> bool:
        for e in wave:
            r = state.results.get(e)
            if r is not None and r.rollout == rid and r.state in FINAL:
                if not (wait_held and r.state == "pending"):
                    continue
            s = state.status.get(e)
            if s is not None and s.state == "online":
                return False
        return True

    client.wait_for(done, timeout_s)
    with client.lock:
        out = {}
        for e in wave:
            r = client.state.results.get(e)
            if r is not None and r.rollout == rid and r.state in FINAL:
                out[e] = r
            elif e in client.state.status and client.state.status[e].state == "online":
                out[e] = _timed_out(rid, e, timeout_s)
        return out


def _timed_out(rid: str, edge: str, timeout_s: float) -> Any:
    from floorconsole.core.fleet import RolloutResult

    return RolloutResult(rid, edge, "failed", False, message=f"no result within {timeout_s:g} s")


def _roll_back(
    client: Any,
    rid: str,
    edges: Sequence[str],
    before: dict[str, str],
    timeout_s: float,
    by: str,
    report: RolloutReport,
    say: Callable[[str], None],
    note: Callable[..., None],
) -> None:
    back_id = rid + "-back"
    for e in edges:
        cmd = RolloutCommand(back_id, "rollback", snapshot=before[e], by=by, t=time.time())
        client.send(e, command_payload(cmd))
    note("rollback sent", edges=list(edges))
    results = _wait_results(client, back_id, edges, timeout_s)
    for e in edges:
        r = results.get(e)
        if r is not None and r.ok:
            report.rolled_back.append(e)
            say(f"  rolled back {e} to {before[e][:12]}: {r.state}")
        else:
            say(f"  rollback of {e}: {'pending (offline)' if r is None else r.message}")
        note("rolled back", edge=e, result=None if r is None else r.as_dict())
