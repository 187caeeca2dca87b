"""Int8 weights with one scale per output channel, stored the way the shipped runtime graphs store them.

Each large weight becomes an int8 initializer and a float scale per output channel, turned back
into the float weight by a constant `Cast -> Mul` chain in the outer graph: the file is ~4× smaller
and onnxruntime folds the chain once when the session loads, so decoding runs float kernels
(the shipped moonshine-cpp base-en graphs do the same; models/ort_graphs.py reads them).
Per-channel rather than per-tensor scales: one outlier row would otherwise set the step for the
whole matrix, and Moonshine's authors report per-tensor scales cost small models several WER points.
Activations stay float (no dynamic activation quantisation), so the only error is the weights'.
"""

from __future__ import annotations

import numpy as np

# Consumer (op, input index) -> the axis that indexes output channels, which keeps its own scale.
_CHANNEL_AXIS = {("MatMul", 1): 1, ("Gather", 0): 0, ("Conv", 1): 0}
# Smaller tensors (norms, biases, rotary tables) stay float: they are a rounding error of the size.
MIN_ELEMENTS = 4096


def quantize_weights(model) -> dict[str, int]:
    """Quantise `model` (an onnx ModelProto, changed in place); returns counts for the provenance."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    axes = _channel_axes(graph)
    kept, nodes, counts = [], [], {"quantized": 0, "kept_float": 0}
    for tensor in graph.initializer:
        axis = axes.get(tensor.name)
        if tensor.data_type != TensorProto.FLOAT or axis is None or _elements(tensor) < MIN_ELEMENTS:
            kept.append(tensor)
            counts["kept_float"] += tensor.data_type == TensorProto.FLOAT
            continue
        q, scale = per_channel_int8(numpy_helper.to_array(tensor), axis)
        kept += [numpy_helper.from_array(q, tensor.name + "_int8"), numpy_helper.from_array(scale, tensor.name + "_scale")]
        nodes += [
            helper.make_node("Cast", [tensor.name + "_int8"], [tensor.name + "_cast"], to=TensorProto.FLOAT,
                             name=tensor.name + "/Cast"),
            helper.make_node("Mul", [tensor.name + "_cast", tensor.name + "_scale"], [tensor.name], name=tensor.name + "/Mul"),
        ]
        counts["quantized"] += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)  # the dequantisation runs before anything reads the weights
    return counts


def per_channel_int8(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 (−127..127) and the float32 scale per index of `axis`, shaped to broadcast."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    peak = np.abs(weight).max(axis=reduce, keepdims=True).astype(np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, scale


def _elements(tensor) -> int:
    return int(np.prod(tensor.dims)) if len(tensor.dims) else 1


def _channel_axes(graph) -> dict[str, int]:
    """Initializer name -> its channel axis, for initializers every consumer of which agrees on one."""
    seen: dict[str, set[int | None]] = {}
    for node in _all_nodes(graph):
        for index, name in enumerate(node.input):
            seen.setdefault(name, set()).add(_CHANNEL_AXIS.get((node.op_type, index)))
    return {name: next(iter(a)) for name, a in seen.items() if len(a) == 1 and None not in a}


def _all_nodes(graph):
    """Every node of `graph` and of its subgraphs (the merged decoder's If branches)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == attribute.GRAPH:
                yield from _all_nodes(attribute.g)
