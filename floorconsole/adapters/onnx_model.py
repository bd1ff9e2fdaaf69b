"""A model package loaded into onnxruntime: checked against its sidecar, session built once.

    model = load_package("fixtures/models/motor_anomaly")   # NAME, NAME.onnx or NAME.json
    scores = model.score(raw_features)                       # (F,) or (n, F) raw features

Building an InferenceSession holds the GIL (a few ms for a small graph): do it once, off the
console's path; `run` releases the GIL and is safe to call from a thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from floorconsole.core.model_package import (
    ModelPackage,
    OutputSpec,
    PackageError,
    load_sidecar,
    package_paths,
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    type: str  # e.g. "tensor(float)"
    shape: tuple[int | str | None, ...]


class OnnxModel:
    """A package whose ONNX graph agrees with its sidecar. Construct with load_package."""

    def __init__(
        self,
        package: ModelPackage,
        session: ort.InferenceSession,
        onnx_sha256: str,
        sidecar_sha256: str,
        inputs: list[TensorInfo],
        outputs: list[TensorInfo],
        onnx_bytes: int,
    ) -> None:
        self.package = package
        self.session = session
        self.onnx_sha256 = onnx_sha256
        self.sidecar_sha256 = sidecar_sha256
        self.inputs = inputs
        self.outputs = outputs
        self.onnx_bytes = onnx_bytes
        self._input = package.onnx_input
        self._output = [package.onnx_output]
        self.n_features = len(package.features)

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    @property
    def sha256(self) -> str:
        """One id for the pair: sha256 over the two files' sha256 (ONNX, then sidecar)."""
        return hashlib.sha256((self.onnx_sha256 + self.sidecar_sha256).encode()).hexdigest()

    def run(self, scaled: np.ndarray) -> np.ndarray:
        """The graph's output for (n, F) (or (F,)) scaled float32 inputs, as it comes."""
        x = np.asarray(scaled, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        return self.session.run(self._output, {self._input: x})[0]  # type: ignore[no-any-return]

    def score(self, features: np.ndarray) -> np.ndarray:
        """Raw features (F,) or (n, F) -> scores (n,): scale, run, then the sidecar's output
        rule (e.g. mean squared reconstruction error)."""
        scaled = self.package.scaler.transform(np.atleast_2d(features))
        out = self.run(scaled)
        return self.package.output.score(out, scaled)


def _tensor_infos(nodes: list[ort.NodeArg]) -> list[TensorInfo]:
    return [TensorInfo(n.name, n.type, tuple(n.shape)) for n in nodes]


def _shape_text(shape: tuple[int | str | None, ...]) -> str:
    return "[" + ", ".join("?" if not isinstance(d, int) else str(d) for d in shape) + "]"


def load_package(path: str | Path) -> OnnxModel:
    """Load NAME.onnx and NAME.json; raises PackageError saying what is wrong or what differs."""
    onnx_path, json_path = package_paths(path)
    if not onnx_path.exists():
        raise PackageError(
            onnx_path,
            [
                f"missing ONNX file: a model package is {onnx_path.name} "
                f"with {json_path.name} beside it"
            ],
        )
    package = load_sidecar(onnx_path)
    try:
        data = onnx_path.read_bytes()
    except OSError as e:
        raise PackageError(onnx_path, [f"cannot read the ONNX file: {e.strerror}"]) from e
    onnx_sha = hashlib.sha256(data).hexdigest()
    sidecar_sha = sha256_file(json_path)
    if onnx_sha != package.onnx_sha256:
        raise PackageError(
            json_path,
            [
                f"onnx.sha256: this sidecar was written for an ONNX file with sha256 "
                f"{package.onnx_sha256[:12]}…, but {onnx_path.name} has {onnx_sha[:12]}…: a sidecar "
                "for another model (or a changed ONNX file without a new sidecar)"
            ],
        )
    opts = ort.SessionOptions()
    # One thread per session: a 33-feature MLP gains nothing from more, and 20 motors must not
    # start 20 thread pools on a 2-core edge box.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad graph
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackageError(
            onnx_path,
            [f"onnxruntime cannot load this file (corrupt or not an ONNX model): {first[:300]}"],
        ) from e
    inputs = _tensor_infos(session.get_inputs())
    outputs = _tensor_infos(session.get_outputs())
    problems = _compare(package, inputs, outputs)
    if problems:
        raise PackageError(onnx_path, problems)
    model = OnnxModel(package, session, onnx_sha, sidecar_sha, inputs, outputs, len(data))
    _probe(model, onnx_path)
    return model


def _compare(
    package: ModelPackage, inputs: list[TensorInfo], outputs: list[TensorInfo]
) -> list[str]:
    """What differs between the graph and the sidecar, in words."""
    n = len(package.features)
    problems = []
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {_shape_text(i.shape)}" for i in inputs)
        problems.append(
            f"the graph has {len(inputs)} inputs ({names}); the sidecar expects one "
            f"input {package.onnx_input!r} of {n} features"
        )
    else:
        i = inputs[0]
        if i.name != package.onnx_input:
            problems.append(
                f"the graph's input is {i.name!r}; the sidecar says {package.onnx_input!r}"
            )
        if i.type != "tensor(float)":
            problems.append(
                f"input {i.name!r} is {i.type}; the engine feeds tensor(float) (float32)"
            )
        if len(i.shape) != 2:
            problems.append(
                f"input {i.name!r} has shape {_shape_text(i.shape)}; expected [batch, {n}]"
            )
        elif isinstance(i.shape[1], int) and i.shape[1] != n:
            problems.append(
                f"input {i.name!r} takes {i.shape[1]} features "
                f"{_shape_text(i.shape)}; the sidecar lists {n} features"
            )
    out_names = [o.name for o in outputs]
    if package.onnx_output not in out_names:
        problems.append(
            f"the graph has no output {package.onnx_output!r} (it has {', '.join(out_names)})"
        )
    return problems


def _probe(model: OnnxModel, onnx_path: Path) -> None:
    """One run on a zero window: the output must have the size the sidecar's rule needs, and
    a batch of two must give two scores (catches a graph with a fixed batch of 1 too)."""
    n = model.n_features
    try:
        for batch in (1, 2):
            zeros = np.zeros((batch, n), dtype=np.float32)
            out = model.run(zeros)
            scores = model.package.output.score(out, zeros)
            if scores.shape != (batch,):
                raise ValueError(f"a batch of {batch} gave {scores.shape[0]} scores")
    except ValueError as e:
        raise PackageError(onnx_path, [f"the graph's output does not fit the sidecar: {e}"]) from e
    except Exception as e:  # onnxruntime's runtime errors (shape mismatch inside the graph)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackageError(onnx_path, [f"a test run on {n} features failed: {first[:300]}"]) from e


def score_onnx_bytes(
    data: bytes, input_name: str, output_name: str, output: OutputSpec, scaled: np.ndarray
) -> np.ndarray:
    """Scores of (n, F) scaled float32 inputs through an ONNX graph given as bytes, before it
    has a sidecar (recalibration: the thresholds come from these scores). Batched, one
    thread, as the engine runs a package."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(scaled), 4096):
        z = np.ascontiguousarray(scaled[start : start + 4096], dtype=np.float32)
        y = session.run([output_name], {input_name: z})[0]
        out.append(output.score(y, z))
    return np.concatenate(out) if out else np.zeros(0)
