"""A small ONNX writer: a dense autoencoder (Gemm and Tanh layers) as ONNX model bytes.

Why by hand: a candidate model trained on the box must be exported as ONNX, and the box has
only the base dependencies (onnxruntime runs ONNX, it does not write it; the `onnx` package
is in the test and train extras only). An ONNX file is a protobuf message; the few messages
a dense network needs (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto) are
written here with the protobuf wire format directly: about a hundred lines, pure stdlib +
numpy, and the same weights always give the same bytes. The tests check the output with
`onnx.checker` and run it in onnxruntime; the engine loads it through the same checks as any
imported package (adapters.onnx_model.load_package).

Field numbers are those of onnx/onnx.proto (IR version 8, opset 17).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IR_VERSION = 8
OPSET = 17
FLOAT = 1  # TensorProto.DataType.FLOAT


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # int64 fields: negatives as two's complement, 10 bytes
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode("utf-8"))


def _tensor(name: str, values: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian float32)."""
    a = np.ascontiguousarray(values, dtype="<f4")
    dims = b"".join(_int(1, d) for d in a.shape)
    return dims + _int(2, FLOAT) + _str(8, name) + _bytes(9, a.tobytes())


def _value_info(name: str, dims: Sequence[int | str]) -> bytes:
    """ValueInfoProto name (1), type (2) -> TypeProto.tensor_type (1) -> elem_type (1),
    shape (2) -> dim (1) -> dim_value (1) | dim_param (2)."""
    shape = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, FLOAT) + _bytes(2, shape)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str], name: str) -> bytes:
    """NodeProto: input (1), output (2), name (3), op_type (4)."""
    return (
        b"".join(_str(1, i) for i in inputs)
        + b"".join(_str(2, o) for o in outputs)
        + _str(3, name)
        + _str(4, op)
    )


def dense_autoencoder_onnx(
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    input_name: str = "features",
    output_name: str = "variable",
    graph_name: str = "autoencoder",
    doc: str = "",
    producer: str = "floorconsole",
) -> bytes:
    """ONNX bytes of y = L_k(tanh(... tanh(L_1(x)))), L_i(x) = x @ W_i + b_i: tanh between
    layers, none after the last (as sklearn's MLPRegressor). W_i is (in, out), float32 in
    the file; the input is [batch, in] float32, the output [batch, out]."""
    if len(weights) != len(biases) or not weights:
        raise ValueError("one bias per weight matrix, at least one layer")
    nodes: list[bytes] = []
    inits: list[bytes] = []
    x = input_name
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        w = np.asarray(w)
        b = np.asarray(b)
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"layer {k}: weights {w.shape} and bias {b.shape} do not fit")
        if k and w.shape[0] != np.asarray(weights[k - 1]).shape[1]:
            raise ValueError(f"layer {k} takes {w.shape[0]} values; the layer before gives more")
        last = k == len(weights) - 1
        inits += [_tensor(f"W{k}", w), _tensor(f"B{k}", b)]
        lin = output_name if last else f"h{k}"
        nodes.append(_node("Gemm", [x, f"W{k}", f"B{k}"], [lin], f"gemm{k}"))
        if not last:
            nodes.append(_node("Tanh", [lin], [f"a{k}"], f"tanh{k}"))
            x = f"a{k}"
    n_in = int(np.asarray(weights[0]).shape[0])
    n_out = int(np.asarray(weights[-1]).shape[1])
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _str(2, graph_name)
        + b"".join(_bytes(5, t) for t in inits)
        + _bytes(11, _value_info(input_name, ["batch", n_in]))
        + _bytes(12, _value_info(output_name, ["batch", n_out]))
    )
    opset = _str(1, "") + _int(2, OPSET)
    return (
        _int(1, IR_VERSION)
        + _str(2, producer)
        + (_str(6, doc) if doc else b"")
        + _bytes(7, graph)
        + _bytes(8, opset)
    )
