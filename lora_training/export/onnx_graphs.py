"""A (merged) transformers Moonshine model as the two ONNX graphs the on-device runtimes load.

Why not optimum's exporter: it pins a transformers release older than the one we train with, and
the model it traces is transformers' own forward, whose Python cache objects it must patch. We
trace models/moonshine_graphs.py with torch's TorchScript exporter (`dynamo=False`: it needs no
onnxscript and yields plain opset-17 graphs that onnxruntime 1.17+ runs) and assemble the merged
decoder with the onnx package: both decoder passes become the branches of one `If` on
`use_cache_branch`, sharing one copy of every weight, with exactly the shipped base-en
interface (input order included: sherpa-onnx feeds inputs by position).
"""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np

OPSET = 17


def _trace(module, args: tuple, input_names: list[str], output_names: list[str], axes: dict):
    import onnx
    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose (above)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: tested
        torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=OPSET,
                          input_names=input_names, output_names=output_names, dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue())


def encoder_graph(model):
    """input_values (batch × samples) -> last_hidden_state (batch × frames × hidden)."""
    import torch

    from lora_training.models.moonshine_graphs import EncoderGraph

    sample = torch.zeros((1, 16000), dtype=torch.float32)
    axes = {"input_values": {0: "batch_size", 1: "num_samples"},
            "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"}}
    return _trace(EncoderGraph(model), (sample,), ["input_values"], ["last_hidden_state"], axes)


def merged_decoder_graph(model):
    """The decoder step with and without cache, as one graph switched by `use_cache_branch`."""
    import torch

    from lora_training.models.moonshine_graphs import CacheLayout, DecoderStepGraph

    layout = CacheLayout.of(model)
    past, present = layout.past_names(), layout.present_names()
    frames = 20
    ids = torch.ones((1, 1), dtype=torch.long)
    states = torch.zeros((1, frames, model.config.hidden_size))
    pasts = [torch.zeros((1, layout.heads, 3 if ".decoder." in n else frames, layout.head_dim)) for n in past]
    common = {"input_ids": {0: "batch_size", 1: "decoder_sequence_length"},
              "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
              "logits": {0: "batch_size", 1: "decoder_sequence_length"}}
    past_axes = {n: {0: "batch_size", 2: _length(n, "past_decoder_sequence_length")} for n in past}
    present_axes = {n: {0: "batch_size", 2: _length(n, "past_decoder_sequence_length + 1")} for n in present}
    first = _trace(DecoderStepGraph(model, cached=False), (ids, states),
                   ["input_ids", "encoder_hidden_states"], ["logits", *present], {**common, **present_axes})
    cached = _trace(DecoderStepGraph(model, cached=True), (ids, states, *pasts),
                    ["input_ids", "encoder_hidden_states", *past], ["logits", *present],
                    {**common, **past_axes, **present_axes})
    return merge_branches(first, cached)


def _length(name: str, decoder_length: str) -> str:
    return decoder_length if ".decoder." in name else "encoder_sequence_length_out"


def merge_branches(first, cached):
    """One model: the inputs of `cached` plus `use_cache_branch`, an `If` whose then-branch is
    `cached` and else-branch `first`, and each distinct weight stored once in the outer graph."""
    import onnx
    from onnx import TensorProto, helper

    weights: dict[str, onnx.TensorProto] = {}
    branches = [_as_branch(graph, prefix, weights)
                for graph, prefix in ((cached.graph, "cached/"), (first.graph, "first/"))]
    condition = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    switch = helper.make_node("If", ["use_cache_branch"], [o.name for o in cached.graph.output],
                              name="optimum::if", then_branch=branches[0], else_branch=branches[1])
    # The cached pass never reads the encoder states, so its trace has no such input: take the
    # first pass's inputs, then the pasts.
    inputs = [*first.graph.input, *(i for i in cached.graph.input if i.name.startswith("past_key_values."))]
    graph = helper.make_graph([switch], "moonshine_decoder_merged", [*inputs, condition], list(cached.graph.output),
                              initializer=list(weights.values()))
    merged = helper.make_model(graph, opset_imports=list(cached.opset_import), producer_name="lora-training")
    merged.ir_version = cached.ir_version
    onnx.checker.check_model(merged)
    return merged


def _as_branch(graph, prefix: str, weights: dict):
    """`graph` as an If branch: no inputs (it reads the outer graph's), its weights moved out
    (named by content, so both branches share them), every other value name prefixed."""
    from onnx import helper, numpy_helper

    outer = {i.name for i in graph.input}
    renamed = {}
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        key = hashlib.sha256(array.tobytes() + str((array.dtype, array.shape)).encode()).hexdigest()[:16]
        name = f"w_{key}"
        if name not in weights:
            weights[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        renamed[tensor.name] = name

    def rename(value: str) -> str:
        if not value or value in outer:
            return value
        return renamed.get(value) or prefix + value

    nodes = []
    for node in graph.node:
        node.input[:] = [rename(v) for v in node.input]
        node.output[:] = [rename(v) for v in node.output]
        node.name = prefix + node.name
        nodes.append(node)
    outputs = []
    for out in graph.output:
        source = rename(out.name)
        if out.name in outer:  # a past passed straight through: a branch output must be produced by a node
            source = prefix + out.name
            nodes.append(helper.make_node("Identity", [out.name], [source], name=source))
        outputs.append(helper.make_tensor_value_info(source, out.type.tensor_type.elem_type, None))
    return helper.make_graph(nodes, prefix.rstrip("/"), [], outputs)
