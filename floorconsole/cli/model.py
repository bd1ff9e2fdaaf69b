"""`floorconsole model inspect FILE`: what a model package holds, as text; `model calibrate`,
`model shadow` and `model promote`: recalibration at the box (issue 15)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from floorconsole.adapters.onnx_model import load_package


def _shape(shape: tuple[int | str | None, ...]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in shape) + "]"


def _g(v: float) -> str:
    return f"{v:.4g}"


def inspect_package(path: str | Path) -> str:
    """A readable account of a package (NAME, NAME.onnx or NAME.json): inputs, outputs,
    features, thresholds, the drift reference and the sha256 of both files.

    Loads it exactly as the engine would, so a package this prints is one the engine accepts;
    a bad one raises PackageError whose message says what is wrong."""
    m = load_package(path)
    p = m.package
    lines: list[str | None] = [
        f"model      {p.name} {p.version}",
        f"           {p.description}" if p.description else None,
        f"files      {p.onnx_path} ({m.onnx_bytes} B)",
        f"           {p.sidecar_path}",
        f"sha256 onnx    {m.onnx_sha256}",
        f"       sidecar {m.sidecar_sha256}",
        f"       package {m.sha256}",
        "",
        "inputs (wire each in the plant file's [[models]] inputs)",
    ]
    for i in p.inputs:
        extra = (
            f"{i.samples} samples at {i.rate_hz:g} Hz"
            if i.kind == "waveform" and i.rate_hz
            else f"{i.samples} samples"
            if i.kind == "waveform"
            else "scalar"
        )
        lines.append(f"  {i.name:<10} {i.kind:<9} {extra}{f', {i.unit}' if i.unit else ''}")
    lines.append("onnx graph")
    for t in m.inputs:
        lines.append(f"  input  {t.name} {t.type} {_shape(t.shape)}")
    for t in m.outputs:
        mark = "  (used)" if t.name == p.onnx_output else ""
        lines.append(f"  output {t.name} {t.type} {_shape(t.shape)}{mark}")
    out = p.output
    rule = (
        f"{out.error} between the scaled input and output {p.onnx_output!r}"
        if out.kind == "reconstruction_error"
        else f"element {out.index} of {p.onnx_output!r}"
    )
    lines += [
        f"score      {out.kind}: {rule}",
        f"smoothing  {p.smoothing.describe()}",
        f"thresholds warning {_g(p.thresholds.warning)}, critical {_g(p.thresholds.critical)}",
    ]
    if p.thresholds.basis:
        lines.append(f"           {p.thresholds.basis}")
    lines += [
        f"scaler     z = (x - mean) / std, clipped to ±{p.scaler.clip:g}; std floored at "
        f"{p.scaler.std_floor_rel:g} × |mean|",
        f"drift      live window {p.drift.window} windows (status after {p.drift.min_windows}); "
        f"Page-Hinkley delta {p.drift.ph_delta:g}, threshold {p.drift.ph_threshold:g}",
        "",
        f"features ({len(p.features)}) and reference ({p.reference.windows} training windows, "
        f"{len(p.reference.features[0].counts)} bins, {len(p.reference.levels)} quantiles)",
        f"  {'#':>2} {'feature':<20} {'input':<6} {'window':<6} {'mean':>9} {'std':>9} "
        f"{'p1':>9} {'p99':>9}",
    ]
    levels = list(p.reference.levels)

    def pct(q: tuple[float, ...], level: float) -> float:
        k = min(range(len(levels)), key=lambda i: abs(levels[i] - level))
        return q[k]

    for j, (f, r) in enumerate(zip(p.features, p.reference.features, strict=True)):
        lines.append(
            f"  {j:>2} {f.name:<20} {f.input:<6} {f.window_text:<6} {_g(r.mean):>9} "
            f"{_g(r.std):>9} {_g(pct(r.quantiles, 0.01)):>9} "
            f"{_g(pct(r.quantiles, 0.99)):>9}"
        )
    s = p.reference.score
    lines.append(
        f"     {'score':<20} {'':<6} {'':<6} {_g(s.mean):>9} {_g(s.std):>9} "
        f"{_g(pct(s.quantiles, 0.01)):>9} {_g(pct(s.quantiles, 0.99)):>9}"
    )
    if p.training:
        lines += ["", "training"]
        lines += [f"  {k}: {v}" for k, v in p.training.items()]
    return "\n".join(_wrap(line) for line in lines if line is not None) + "\n"


def _wrap(line: str, width: int = 80) -> str:
    """Fit an 80-column terminal: long prose lines wrap under their own indent (+2)."""
    if len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    head = line[:indent]
    if line[indent:].startswith(("model ", "thresholds ", "drift ", "scaler ", "score ")):
        head = " " * 11
    return textwrap.fill(line, width=width, subsequent_indent=head + "  ", break_on_hyphens=False)


# --- recalibration: calibrate (offline, from the history file), shadow and promote (through
# the running engine's socket, as a logged-in user) ----------------------------------------


class ModelCommandError(ValueError):
    """A model command that cannot be done; the message is one line for the user."""


def _progress_printer(stream: TextIO) -> Callable[[str, float], None]:
    last: list[Any] = [None, -1.0]

    def show(what: str, done: float) -> None:
        pct = int(done * 100)
        if what != last[0] or pct >= last[1] + 10 or done >= 1.0:
            stream.write(f"  {what}: {pct} %\n")
            stream.flush()
            last[0], last[1] = what, pct

    return show


def calibrate_from_history(
    data_dir: Path,
    since: float,
    until: float,
    *,
    model: str | None = None,
    train_weights: bool = False,
    seed: int | None = None,
    progress: TextIO | None = None,
) -> str:
    """A candidate package for a model of the active snapshot from the history file of a
    data directory (works while the engine runs: the history is read, not written), written
    to DATA_DIR/candidates/. Returns what was built, as text."""
    from floorconsole.adapters.historian import HistoryReader
    from floorconsole.cli.snapshot import SnapshotCommandError, open_store
    from floorconsole.core.calibrate import DEFAULT_SEED, CalibrationError
    from floorconsole.core.config import PlantError, validate_plant
    from floorconsole.core.model_package import PackageError
    from floorconsole.engine.calibrate import calibrate

    try:
        with open_store(data_dir) as store:
            snap = store.active_snapshot()
            if snap is None:
                raise ModelCommandError("no snapshot has been activated yet in this data directory")
            raw = store.materialize(snap.id, data_dir / "models")
    except SnapshotCommandError as e:
        raise ModelCommandError(str(e)) from None
    try:
        plant = validate_plant(raw, source=f"snapshot {snap.short}", base_dir=data_dir)
    except PlantError as e:
        raise ModelCommandError(f"snapshot {snap.short}: {e.problems[0]}") from None
    models = {m.id: m for m in plant.models}
    if not models:
        raise ModelCommandError(f"snapshot {snap.short} has no [[models]]")
    if model is None:
        if len(models) > 1:
            raise ModelCommandError(f"which model? --model one of {', '.join(models)}")
        model = next(iter(models))
    cfg = models.get(model)
    if cfg is None:
        raise ModelCommandError(
            f"no model {model!r} in snapshot {snap.short} ({', '.join(models)})"
        )
    db = data_dir / "history.db"
    if not db.exists():
        raise ModelCommandError(f"no history at {db}: has an engine run with this data directory?")
    try:
        parent = load_package(cfg.package)
        with HistoryReader(db) as reader:
            cand = calibrate(
                reader,
                cfg,
                parent,
                since,
                until,
                data_dir / "candidates",
                train_weights=train_weights,
                seed=DEFAULT_SEED if seed is None else seed,
                progress=_progress_printer(progress) if progress is not None else lambda *_: None,
            )
    except (CalibrationError, PackageError) as e:
        raise ModelCommandError(str(e)) from None
    s = cand.summary
    return "\n".join(
        [
            f"candidate  {cand.path} ({s['version']})",
            f"sha256     package {cand.package_sha256}",
            f"           parent  {cand.parent_sha256} (model {cfg.id}, snapshot {snap.short})",
            f"window     {_utc(since)} .. {_utc(until)} UTC: {cand.window.windows} windows used, "
            f"{cand.window.skipped} left out",
            f"thresholds warning {_g(s['warning'])} (live {_g(s['parent_warning'])}), critical "
            f"{_g(s['critical'])} (live {_g(s['parent_critical'])})",
            "weights    "
            + (f"trained here, loss {_g(s['train_loss'])}" if s["trained"] else "the parent's"),
            f"next       floorconsole model shadow start --model {cfg.id} --candidate {cand.path}",
        ]
    )


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def engine_session(data_dir: Path, user: str, pin: str) -> tuple[Any, str]:
    """(RemoteAPI connected to the engine of data_dir, a session of user)."""
    from floorconsole.engine.attach import socket_path
    from floorconsole.engine.remote import EngineRefused, EngineUnreachable, RemoteAPI

    path = socket_path(data_dir)
    api = RemoteAPI(path)
    try:
        api.connect()
    except (EngineRefused, EngineUnreachable) as e:
        raise ModelCommandError(
            f"no engine answers at {path} ({str(e).split(': ', 1)[-1]}): shadow and promote "
            "act on a running engine"
        ) from None
    r = api.login(user, pin)
    if not r.get("ok"):
        api.close()
        raise ModelCommandError(f"login as {user} refused: {r.get('message', '')}")
    return api, str(r["session"])


def run_on_engine(
    data_dir: Path, user: str, pin: str, name: str, *, take_control: bool = False, **args: Any
) -> tuple[bool, str]:
    """One engine command as `user`: (ok, message)."""
    api, session = engine_session(data_dir, user, pin)
    try:
        if take_control:
            r = api.command("control.take", session=session)
            if not r["ok"]:
                return False, r["message"]
        r = api.command(name, session=session, **args)
        return bool(r["ok"]), str(r["message"])
    finally:
        end_session(api, session)


def end_session(api: Any, session: str) -> None:
    """Close the connection: the engine logs out every session of a connection that ends
    (engine.attach), so no logout is sent (one sent without waiting would be cut off)."""
    del session
    api.close()


def comparison_text(c: dict[str, Any]) -> str:
    """A shadow against its live model (EngineAPI.model_comparison), as text."""
    if not c.get("running"):
        last = c.get("last_candidate")
        tail = f"; last candidate {last['path']}" if last else ""
        return f"no shadow beside {c['model']}{tail}"
    live, sh, cand = c["live"], c["shadow"], c["candidate"]
    n = c["windows"]
    agree = c["agreement"]
    lines = [
        f"shadow     {cand['name']} {cand['version']} ({cand['sha256'][:12]}) beside "
        f"{c['model']} {live['version']} ({live['sha256'][:12]}), since {_utc(c['since'])} UTC",
        f"windows    {n}, states agree in {agree:.0%}" if agree is not None else "windows    0",
        f"           {'':<8} {'warning':>9} {'critical':>9} {'warned':>7} {'tripped':>8}",
        f"live       {'':<8} {live['warning_windows']:>9} {live['critical_windows']:>9} "
        f"{live['warnings']:>7} {live['trips']:>8}",
        f"candidate  {'':<8} {sh['warning_windows']:>9} {sh['critical_windows']:>9} "
        f"{sh['warnings']:>7} {sh['trips']:>8}",
        f"drift      candidate {sh['drift']}",
    ]
    for d in c.get("dry_run", []):
        lines.append(
            f"rule       {d['rule']} on {d['signal']}: live {d['live']['activations']} "
            f"activation(s), candidate {d['shadow']['activations']}"
        )
    return "\n".join(lines)
