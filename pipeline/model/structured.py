"""Structured pruning: remove whole channels, so the model is smaller and faster on the device for real.

Magnitude pruning zeroes single weights; TFLM stores and multiplies those zeros, so it saves no flash and no
cycles. Here every prunable channel group loses its weakest channels, a smaller Keras model is rebuilt with the
same layers and fewer filters/units, and the surviving weights are copied over:

- A *group* is a set of channels that must be kept or removed together: the outputs of a Conv1D, Conv2D or Dense,
  carried unchanged through BatchNormalization, activations, dropout, padding, pooling (global too), depthwise
  convolutions (one filter per channel; a SeparableConv2D reaches here as a depthwise and a 1x1 convolution) and
  Flatten, and joined by a residual Add (both branches must keep the same channels). A Concatenate on the channel
  axis lays its inputs' groups side by side: each keeps its own channels, the consumer takes them at their offsets.
- Groups that reach the model's output (the classifier, the reconstruction) are not pruned. Groups whose channel
  count a layer depends on (a Reshape, a per-channel Normalization, a depthwise multiplier, a Concatenate on another
  axis) are left as they are and listed in `Plan.left`, which the build reports.
- Channels are ranked by the L1 norm of the filters that produce them (summed over the producers of a residual
  group); the `fraction` with the smallest norms are removed, at least one channel is kept.
- Consumers follow: the next Conv2D or Dense loses the matching input channels (after a Flatten, every spatial
  position's copy of them), BatchNormalization and DepthwiseConv2D lose the same channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.model import tfenv
from pipeline.errors import PipelineError

PRODUCERS = ("Conv1D", "Conv2D", "Dense")
PASSTHROUGH = ("BatchNormalization", "ReLU", "Activation", "Dropout", "MaxPooling2D", "AveragePooling2D",
               "DepthwiseConv2D", "InputLayer", "Softmax", "LeakyReLU", "GlobalAveragePooling2D",
               "GlobalMaxPooling2D", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
               "GlobalMaxPooling1D", "ZeroPadding1D", "ZeroPadding2D", "SpatialDropout1D", "SpatialDropout2D",
               "Rescaling")
FIXING = ("Reshape", "Normalization")  # layers that depend on their input's channel count: the group is left


@dataclass
class Plan:
    """Which channels each group keeps, and for each layer the group of its input and of its output."""
    keep: dict[int, np.ndarray] = field(default_factory=dict)  # group -> sorted kept channel indices
    size: dict[int, int] = field(default_factory=dict)  # group -> channels before pruning
    out_group: dict[str, int | None] = field(default_factory=dict)  # layer name -> group of its output channels
    in_group: dict[str, int | None] = field(default_factory=dict)  # layer name -> group of its input channels
    flatten_spatial: dict[str, int] = field(default_factory=dict)  # Dense after Flatten -> positions per channel
    left: list[str] = field(default_factory=list)  # groups that could be pruned but are not, and why


@dataclass
class StructuredResult:
    fraction: float
    channels_before: int
    channels_after: int
    params_before: int
    params_after: int
    groups: int  # prunable channel groups
    left: list[str] = field(default_factory=list)  # groups left as they are, and why


def _inbound(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


class _Groups:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def new(self) -> int:
        g = len(self.parent)
        self.parent[g] = g
        return g

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        self.parent[b] = a
        return a


def plan(model, fraction: float) -> Plan:
    """Trace the channel groups through the model and choose the channels each keeps."""
    groups = _Groups()
    out: dict[str, int | None] = {}
    inp: dict[str, int | None] = {}
    spatial: dict[str, int] = {}
    flat: dict[str, int] = {}  # Flatten layer -> spatial positions it folds into the feature axis
    concat: dict[int, list[tuple[int | None, int]]] = {}  # synthetic group -> its parts (group, channels)
    fixed_why: dict[int, str] = {}  # group -> the layer that keeps its channel count
    synthetic = set()

    def fix(g, why):
        if g is None:
            return
        for part, _ in concat.get(g, [(g, 0)]):
            if part is not None and part not in synthetic:
                fixed_why.setdefault(part, why)

    for layer in model.layers:
        kind = type(layer).__name__
        parents = _inbound(layer)
        source = [out.get(p.name) for p in parents]
        inp[layer.name] = source[0] if source else None
        if kind in PRODUCERS:
            out[layer.name] = groups.new()
            parent = parents[0] if parents else None
            if kind == "Dense" and parent is not None and parent.name in flat:
                spatial[layer.name] = flat[parent.name]
            if getattr(layer, "groups", 1) != 1:
                raise PipelineError(f"structured pruning: grouped convolution {layer.name} is not supported")
        elif kind == "Add":
            merged = None
            if any(g in synthetic for g in source if g is not None):  # a concatenation on one branch: keep all
                for g in source:
                    fix(g, f"Add '{layer.name}' of a concatenation")
                out[layer.name] = None
                continue
            for g in source:
                if g is None:
                    merged = None
                    break
                merged = g if merged is None else groups.union(merged, g)
            out[layer.name] = merged
        elif kind == "Concatenate":
            axis = layer.axis if layer.axis >= 0 else len(layer.output_shape) + layer.axis
            if axis != len(layer.output_shape) - 1:
                for g in source:
                    fix(g, f"Concatenate '{layer.name}' on axis {layer.axis}")
                out[layer.name] = None
                continue
            g = groups.new()
            synthetic.add(g)
            parts = []
            for parent_group, shape in zip(source, [t.shape for t in layer.input]):
                for sub in concat.get(parent_group, [(parent_group, int(shape[-1]))]) if parent_group in concat \
                        else [(parent_group, int(shape[-1]))]:
                    parts.append(sub)
            concat[g] = parts
            out[layer.name] = g
        elif kind == "Flatten":
            out[layer.name] = source[0] if source else None
            shape = layer.input_shape
            flat[layer.name] = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        elif kind == "DepthwiseConv2D" and getattr(layer, "depth_multiplier", 1) != 1:
            out[layer.name] = None  # channels multiply: treat the output as fixed
        elif kind in PASSTHROUGH:
            out[layer.name] = source[0] if source else None
        elif kind in FIXING:
            fix(source[0] if source else None, f"{kind} '{layer.name}' depends on the channel count")
            out[layer.name] = None
        else:
            raise PipelineError(f"structured pruning: layer {layer.name} ({kind}) is not supported; "
                                "use --prune=magnitude for this model")
    # Channels that reach the model's output, or pass a layer that fixes them, are not pruned.
    fixed = set()
    for tensor in model.outputs:
        name = tensor.node.layer.name if hasattr(tensor, "node") else tensor._keras_history.layer.name
        if out.get(name) is not None:
            for part, _ in concat.get(out[name], [(out[name], 0)]):
                if part is not None:
                    fixed.add(groups.find(part))
    for layer in model.layers:
        if type(layer).__name__ == "DepthwiseConv2D" and getattr(layer, "depth_multiplier", 1) != 1:
            fix(inp.get(layer.name), f"DepthwiseConv2D '{layer.name}' multiplies its channels")
    left = {}
    for g, why in fixed_why.items():
        root = groups.find(g)
        if root not in fixed:
            fixed.add(root)
            left[root] = why

    resolve = lambda g: None if g is None or g in synthetic else groups.find(g)  # noqa: E731
    resolve_any = lambda g: g if g in synthetic else resolve(g)  # noqa: E731
    result = Plan(out_group={k: resolve_any(v) for k, v in out.items()},
                  in_group={k: resolve_any(v) for k, v in inp.items()}, flatten_spatial=spatial)
    scores: dict[int, np.ndarray] = {}
    for layer in model.layers:
        g = result.out_group.get(layer.name)
        if type(layer).__name__ in PRODUCERS and g is not None:
            kernel = np.asarray(layer.get_weights()[0])
            norm = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
            scores[g] = scores.get(g, 0) + norm
    for g, score in scores.items():
        result.size[g] = len(score)
        if g in fixed:
            result.keep[g] = np.arange(len(score))
            continue
        kept = max(1, int(round(len(score) * (1.0 - fraction))))
        result.keep[g] = np.sort(np.argsort(-score, kind="stable")[:kept])
    producers: dict[int, list[str]] = {}
    for layer in model.layers:
        g = result.out_group.get(layer.name)
        if type(layer).__name__ in PRODUCERS and g is not None:
            producers.setdefault(g, []).append(layer.name)
    result.left = [f"{', '.join(producers.get(g, ['?']))} ({why})" for g, why in left.items() if g in producers]
    for g, parts in concat.items():  # a concatenation keeps each part's kept channels at the part's offset
        offset, kept = 0, []
        for part, size in parts:
            root = None if part is None else groups.find(part)
            kept.append(offset + (result.keep[root] if root in result.keep else np.arange(size)))
            offset += size
        result.keep[g] = np.concatenate(kept)
        result.size[g] = offset
    return result


def _slice(weight: np.ndarray, axis: int, index: np.ndarray | None) -> np.ndarray:
    return weight if index is None else np.take(weight, index, axis=axis)


def _flat_index(keep: np.ndarray, channels: int, positions: int) -> np.ndarray:
    """Rows of a Dense kernel after Flatten (channels last): position p, channel c is row p * channels + c."""
    return (np.arange(positions)[:, None] * channels + keep[None, :]).reshape(-1)


def apply(model, p: Plan):
    """A new model with the planned channels removed and the surviving weights copied."""
    k = tfenv.keras()

    def keep_of(group):
        return None if group is None or group not in p.keep else p.keep[group]

    def clone(layer):
        config = layer.get_config()
        kind = type(layer).__name__
        kept = keep_of(p.out_group.get(layer.name))
        if kept is not None and kind in ("Conv1D", "Conv2D"):
            config["filters"] = int(len(kept))
        elif kept is not None and kind == "Dense":
            config["units"] = int(len(kept))
        return layer.__class__.from_config(config)

    smaller = k.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, smaller.layers):
        weights = old.get_weights()
        if not weights:
            continue
        kind = type(old).__name__
        keep_in = keep_of(p.in_group.get(old.name))
        keep_out = keep_of(p.out_group.get(old.name))
        if kind in ("Conv1D", "Conv2D"):
            weights[0] = _slice(_slice(weights[0], -2, keep_in), -1, keep_out)
            weights[1:] = [_slice(w, 0, keep_out) for w in weights[1:]]
        elif kind == "Dense":
            if keep_in is not None and old.name in p.flatten_spatial:
                positions = p.flatten_spatial[old.name]
                keep_in = _flat_index(keep_in, weights[0].shape[0] // positions, positions)
            weights[0] = _slice(_slice(weights[0], 0, keep_in), 1, keep_out)
            weights[1:] = [_slice(w, 0, keep_out) for w in weights[1:]]
        elif kind == "DepthwiseConv2D":
            weights[0] = _slice(weights[0], 2, keep_in)
            weights[1:] = [_slice(w, 0, keep_in) for w in weights[1:]]
        elif kind == "BatchNormalization":
            weights = [_slice(w, 0, keep_in) for w in weights]
        new.set_weights(weights)
    return smaller


def channels(model) -> int:
    """Output channels of every Conv2D and Dense (what structured pruning removes)."""
    total = 0
    for layer in model.layers:
        if type(layer).__name__ in ("Conv1D", "Conv2D"):
            total += layer.filters
        elif type(layer).__name__ == "Dense":
            total += layer.units
    return total


def prune(model, fraction: float):
    """Remove `fraction` of the channels of every prunable group; returns the smaller model and the figures."""
    if not 0.0 < fraction < 1.0:
        raise PipelineError(f"structured pruning needs a fraction of channels in (0, 1), got {fraction}")
    p = plan(model, fraction)
    smaller = apply(model, p)
    prunable = [g for g in p.keep if len(p.keep[g]) < p.size[g]]
    return smaller, StructuredResult(fraction, channels(model), channels(smaller), int(model.count_params()),
                                     int(smaller.count_params()), len(prunable), p.left)
