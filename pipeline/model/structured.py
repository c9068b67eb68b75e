"""Structured pruning: remove whole channels, so the model is smaller and faster on the device for real.

Magnitude pruning zeroes single weights; TFLM stores and multiplies those zeros, so it saves no flash and no
cycles. Here every prunable channel group loses its weakest channels, a smaller Keras model is rebuilt with the
same layers and fewer filters/units, and the surviving weights are copied over:

- A *group* is a set of channels that must be kept or removed together: the outputs of a Conv2D or Dense, carried
  unchanged through BatchNormalization, activations, dropout, pooling, depthwise convolutions (one filter per
  channel) and Flatten, and joined by a residual Add (both branches must keep the same channels).
- Groups that reach the model's output (the classifier, the reconstruction) are not pruned.
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

PRODUCERS = ("Conv2D", "Dense")
PASSTHROUGH = ("BatchNormalization", "ReLU", "Activation", "Dropout", "MaxPooling2D", "AveragePooling2D",
               "DepthwiseConv2D", "InputLayer", "Softmax", "LeakyReLU", "GlobalAveragePooling2D",
               "GlobalMaxPooling2D")


@dataclass
class Plan:
    """Which channels each group keeps, and for each layer the group of its input and of its output."""
    keep: dict[int, np.ndarray] = field(default_factory=dict)  # group -> sorted kept channel indices
    size: dict[int, int] = field(default_factory=dict)  # group -> channels before pruning
    out_group: dict[str, int | None] = field(default_factory=dict)  # layer name -> group of its output channels
    in_group: dict[str, int | None] = field(default_factory=dict)  # layer name -> group of its input channels
    flatten_spatial: dict[str, int] = field(default_factory=dict)  # Dense after Flatten -> positions per channel


@dataclass
class StructuredResult:
    fraction: float
    channels_before: int
    channels_after: int
    params_before: int
    params_after: int
    groups: int  # prunable channel groups


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
            for g in source:
                if g is None:
                    merged = None
                    break
                merged = g if merged is None else groups.union(merged, g)
            out[layer.name] = merged
        elif kind == "Flatten":
            out[layer.name] = source[0] if source else None
            shape = layer.input_shape
            flat[layer.name] = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        elif kind == "DepthwiseConv2D" and getattr(layer, "depth_multiplier", 1) != 1:
            out[layer.name] = None  # channels multiply: treat the output as fixed
        elif kind in PASSTHROUGH:
            out[layer.name] = source[0] if source else None
        else:
            raise PipelineError(f"structured pruning: layer {layer.name} ({kind}) is not supported; "
                                "use --prune=magnitude for this model")
    # Channels that reach the model's output, or pass a layer that fixes them, are not pruned.
    fixed = set()
    for tensor in model.outputs:
        name = tensor.node.layer.name if hasattr(tensor, "node") else tensor._keras_history.layer.name
        if out.get(name) is not None:
            fixed.add(groups.find(out[name]))
    for layer in model.layers:
        if type(layer).__name__ == "DepthwiseConv2D" and getattr(layer, "depth_multiplier", 1) != 1:
            if inp.get(layer.name) is not None:
                fixed.add(groups.find(inp[layer.name]))

    resolve = lambda g: None if g is None else groups.find(g)  # noqa: E731
    result = Plan(out_group={k: resolve(v) for k, v in out.items()}, in_group={k: resolve(v) for k, v in inp.items()},
                  flatten_spatial=spatial)
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
        if kept is not None and kind == "Conv2D":
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
        if kind == "Conv2D":
            weights[0] = _slice(_slice(weights[0], 2, keep_in), 3, keep_out)
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
        if type(layer).__name__ == "Conv2D":
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
                                     int(smaller.count_params()), len(prunable))
