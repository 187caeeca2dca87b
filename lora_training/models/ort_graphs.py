"""Reading Moonshine's int8 ONNX Runtime (.ort) graphs: every weight, dequantised and named as
transformers names it.

Each int8 weight reaches its consumer through a constant chain Cast → Mul(scale) → Add(zero_point),
which is evaluated in float32 exactly as onnxruntime does; the weight is named after the node that
consumes it (`/model/decoder/layers.3/encoder_attn/dense/MatMul` →
`model.decoder.layers.3.encoder_attn.o_proj.weight`). The decoder's cross-attention k/v weights
only appear inside the `If` node's no-cache branch, so both branches are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lora_training.errors import ModelError

# Module leaf name in the graphs → (kind, leaf name in transformers). The decoder graphs were
# exported with older names: `dense` is `o_proj`, the gated MLP's up/down are `fc1`/`fc2`.
_MODULES = {
    **{leaf: ("linear", leaf) for leaf in ("q_proj", "k_proj", "v_proj", "fc1", "fc2")},
    "dense": ("linear", "o_proj"),
    "up_proj": ("linear", "fc1"),
    "down_proj": ("linear", "fc2"),
    **{leaf: ("norm", leaf) for leaf in ("input_layernorm", "post_attention_layernorm", "final_layernorm")},
    "layer_norm": ("norm", "layer_norm"),
    "norm": ("norm", "norm"),
    "groupnorm": ("groupnorm", "groupnorm"),
    **{leaf: ("conv", leaf) for leaf in ("conv1", "conv2", "conv3")},
    "embed_tokens": ("embedding", "embed_tokens"),
}
# Per kind: (op type, input index) → parameter. Other constant inputs (epsilons, rotary
# frequencies, GELU constants) belong to no parameter and are skipped.
_PARAMETERS = {
    "linear": {("MatMul", 1): "weight", ("Add", 0): "bias", ("Add", 1): "bias"},
    "norm": {("Mul", 1): "weight"},
    "groupnorm": {("Mul", 1): "weight", ("Add", 1): "bias"},
    "conv": {("Conv", 1): "weight", ("Conv", 2): "bias"},
    "embedding": {("Gather", 0): "weight"},
}
# Encoder node names start at the encoder (`/layers.0/...`); decoder names carry `/model/decoder`.
_GRAPH_PREFIXES = {"encoder_model.ort": "model.encoder", "decoder_model_merged.ort": ""}
# onnx TensorProto data types (also the value of Cast's `to` attribute).
_NUMPY_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}
_DEQUANT_OPS = {"Cast", "Mul", "Add"}


def read_ort_parameters(path: Path) -> dict[str, np.ndarray]:
    """Every weight of one .ort graph, dequantised to float32 and named as in transformers."""
    import onnxruntime.tools.ort_format_model  # noqa: F401  (puts ort_flatbuffers_py on sys.path)
    from ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    prefix = _GRAPH_PREFIXES[path.name]
    buf = path.read_bytes()
    session = InferenceSession.GetRootAsInferenceSession(buf, 0)
    parameters: dict[str, np.ndarray] = {}
    for graph in _Graph(session.Model().Graph()).walk():
        for node in graph.nodes:
            for name, value in graph.parameters_of(node, prefix):
                previous = parameters.setdefault(name, value)
                if previous is not value and not np.array_equal(previous, value):
                    raise ModelError(
                        f"{path}: node {node.Name().decode()} gives {name} a second value, "
                        "expected the same weight in both decoder branches, got different values"
                    )
    return parameters


class _Graph:
    """One (sub)graph with its outer scope, able to evaluate constant dequantisation chains."""

    def __init__(self, fb_graph, outer: _Graph | None = None):
        self.outer = outer
        self.nodes = [fb_graph.Nodes(i) for i in range(fb_graph.NodesLength())]
        self._initializers = {}
        for i in range(fb_graph.InitializersLength()):
            tensor = fb_graph.Initializers(i)
            self._initializers[tensor.Name().decode()] = tensor
        self._producers = {
            node.Outputs(j).decode(): node for node in self.nodes for j in range(node.OutputsLength())
        }
        self._constants: dict[str, np.ndarray | None] = {}

    def walk(self) -> Iterator[_Graph]:
        """This graph, then every subgraph (the `If` branches) depth first."""
        from ort_flatbuffers_py.fbs.AttributeType import AttributeType

        yield self
        for node in self.nodes:
            for a in range(node.AttributesLength()):
                attribute = node.Attributes(a)
                if attribute.Type() == AttributeType.GRAPH:
                    yield from _Graph(attribute.G(), outer=self).walk()

    def parameters_of(self, node, prefix: str) -> Iterator[tuple[str, np.ndarray]]:
        """(transformers name, value) for each weight input of `node`; none for other nodes."""
        path = node.Name().decode().strip("/").split("/")[:-1]
        if not path or path[-1] not in _MODULES:
            return
        kind, leaf = _MODULES[path[-1]]
        op = node.OpType().decode()
        for index in range(node.InputsLength()):
            parameter = _PARAMETERS[kind].get((op, index))
            if parameter is None:
                continue
            value = self.constant(node.Inputs(index).decode())
            if value is None:
                continue
            if op == "MatMul":
                value = value.T  # MatMul weights are (in, out); nn.Linear stores (out, in)
            elif kind in ("norm", "groupnorm"):
                value = value.reshape(-1)  # groupnorm's affine is stored as (channels, 1)
            name = ".".join([*filter(None, [prefix]), *path[:-1], leaf, parameter])
            yield name, np.array(value, dtype=np.float32, order="C")

    def constant(self, name: str) -> np.ndarray | None:
        """The value of `name` if it is an initializer or a Cast/Mul/Add chain over them, else None."""
        if name not in self._constants:
            self._constants[name] = self._evaluate(name)
        return self._constants[name]

    def _evaluate(self, name: str) -> np.ndarray | None:
        if name in self._initializers:
            return _decode_tensor(self._initializers[name])
        node = self._producers.get(name)
        if node is None:
            return self.outer.constant(name) if self.outer is not None else None
        op = node.OpType().decode()
        if op not in _DEQUANT_OPS:
            return None
        inputs = [self.constant(node.Inputs(i).decode()) for i in range(node.InputsLength())]
        if any(x is None for x in inputs):
            return None
        if op == "Cast":
            return inputs[0].astype(_NUMPY_DTYPES[_int_attribute(node, "to")])
        if op == "Mul":
            return np.multiply(inputs[0], inputs[1])
        return np.add(inputs[0], inputs[1])


def _int_attribute(node, name: str) -> int:
    for a in range(node.AttributesLength()):
        attribute = node.Attributes(a)
        if attribute.Name().decode() == name:
            return attribute.I()
    raise ModelError(f"node {node.Name().decode()}: attribute missing, expected {name!r}, got none")


def _decode_tensor(tensor) -> np.ndarray:
    dtype = _NUMPY_DTYPES.get(tensor.DataType())
    if dtype is None:
        raise ModelError(
            f"initializer {tensor.Name().decode()}: unsupported data type, "
            f"expected one of {sorted(_NUMPY_DTYPES)}, got {tensor.DataType()}"
        )
    dims = [int(d) for d in tensor.DimsAsNumpy()] if not tensor.DimsIsNone() else []
    raw = tensor.RawDataAsNumpy() if not tensor.RawDataIsNone() else np.zeros(0, np.uint8)
    return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(dims)
