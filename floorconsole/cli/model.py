"""`floorconsole model inspect FILE`: what a model package holds, as text."""

from __future__ import annotations

import textwrap
from pathlib import Path

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
