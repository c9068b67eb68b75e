"""A .tflite model as the interpreter runs it: operators in execution order, their tensors and options, and which
activation tensors are alive at each step. Read without TensorFlow (the schema module of tflite-micro).

This is the one per-operator view of a model: the kernels' scratch rules, the latency and energy cost model and
the per-layer profile all read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.target import tflite_model
from pipeline.errors import PipelineError

TYPE_BYTES = {"INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2, "FLOAT16": 2, "INT32": 4, "FLOAT32": 4, "INT64": 8}
PADDING = {0: "SAME", 1: "VALID"}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    constant: bool  # weights, biases and shapes live in the flatbuffer (flash), not in the arena
    per_channel: bool = False  # quantized with one scale per output channel
    scale: float = 0.0  # the (first) quantization scale: one int8 step in real units
    zero_points: int = 0  # how many zero points its quantization carries (TFLM copies them into the arena)

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def bytes(self) -> int:
        return self.elements * TYPE_BYTES.get(self.dtype, 4)


@dataclass
class Op:
    index: int
    kind: str  # builtin operator name, e.g. CONV_2D
    inputs: list[Tensor]
    outputs: list[Tensor]
    options: dict = field(default_factory=dict)  # stride_h/w, padding, dilation_h/w, depth_multiplier, filter_h/w, activation

    @property
    def weights(self) -> Tensor | None:
        """The weight tensor of a conv / depthwise / fully connected op."""
        if self.kind in tflite_model.WEIGHTED_OPS and len(self.inputs) > 1 and self.inputs[1] is not None:
            return self.inputs[1]
        return None

    @property
    def weight_bytes(self) -> int:
        """Bytes of the op's constant tensors (weights, biases, shape constants) stored in flash."""
        return sum(t.bytes for t in self.inputs if t is not None and t.constant)

    @property
    def params(self) -> int:
        """Trainable parameters: the weights and bias of a conv / depthwise / fully connected op."""
        if self.weights is None:
            return 0
        return sum(t.elements for t in self.inputs[1:] if t is not None and t.constant)

    @property
    def macs(self) -> int:
        w = self.weights
        if w is None:
            return 0
        return tflite_model.op_macs(self.kind, list(w.shape), list(self.outputs[0].shape))

    @property
    def activation_in(self) -> list[Tensor]:
        return [t for t in self.inputs if t is not None and not t.constant]


@dataclass
class Graph:
    path: Path
    ops: list[Op]
    tensors: list[Tensor]
    inputs: list[Tensor]
    outputs: list[Tensor]

    def lifetimes(self) -> dict[int, tuple[int, int]]:
        """Activation tensor index -> (first step, last step) it must be kept in the arena. Model inputs are alive
        from step 0, model outputs to the last step, the rest from the op that writes them to the last reader."""
        last = len(self.ops) - 1
        spans: dict[int, list[int]] = {}
        for t in self.inputs:
            spans[t.index] = [0, 0]
        for op in self.ops:
            for t in op.outputs:
                spans.setdefault(t.index, [op.index, op.index])
            for t in op.activation_in:
                span = spans.setdefault(t.index, [0, op.index])
                span[1] = max(span[1], op.index)
        for t in self.outputs:
            spans.setdefault(t.index, [last, last])[1] = last
        return {index: (a, b) for index, (a, b) in spans.items()}

    def live_at(self, step: int) -> list[Tensor]:
        """The activation tensors that occupy the arena while op `step` runs."""
        return [self.tensors[i] for i, (a, b) in self.lifetimes().items() if a <= step <= b]

    def live_bytes(self) -> list[int]:
        spans = self.lifetimes()
        per_step = [0] * len(self.ops)
        for index, (a, b) in spans.items():
            for step in range(a, b + 1):
                per_step[step] += self.tensors[index].bytes
        return per_step


def _options(kind: str, opts, activations: dict[int, str]) -> dict:
    if opts is None:
        return {}
    out = {}
    for name, key in (("strideH", "stride_h"), ("strideW", "stride_w"), ("dilationHFactor", "dilation_h"),
                      ("dilationWFactor", "dilation_w"), ("depthMultiplier", "depth_multiplier"),
                      ("filterHeight", "filter_h"), ("filterWidth", "filter_w")):
        if hasattr(opts, name):
            out[key] = int(getattr(opts, name))
    if hasattr(opts, "padding"):
        out["padding"] = PADDING.get(int(opts.padding), str(opts.padding))
    if hasattr(opts, "fusedActivationFunction"):
        out["activation"] = activations.get(int(opts.fusedActivationFunction), str(opts.fusedActivationFunction))
    return out


def read(path: Path) -> Graph:
    path = Path(path)
    tflite_model.read(path)  # the checks and one-line errors for a missing, foreign or corrupt file
    schema = tflite_model._schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
        op_names = tflite_model._enum_names(schema.BuiltinOperator)
        type_names = tflite_model._enum_names(schema.TensorType)
        activations = tflite_model._enum_names(schema.ActivationFunctionType)
        graph = model.subgraphs[0]
        tensors = []
        for i, t in enumerate(graph.tensors or []):
            buffer = model.buffers[t.buffer].data if 0 < t.buffer < len(model.buffers) else None
            shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
            scales = t.quantization.scale if t.quantization is not None else None
            zero_points = t.quantization.zeroPoint if t.quantization is not None else None
            tensors.append(Tensor(i, t.name.decode(errors="replace") if t.name else f"t{i}", shape,
                                  type_names.get(t.type, str(t.type)), buffer is not None and len(buffer) > 0,
                                  scales is not None and len(scales) > 1,
                                  float(scales[0]) if scales is not None and len(scales) else 0.0,
                                  len(zero_points) if zero_points is not None else 0))
        ops = []
        for n, op in enumerate(graph.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            ins = [tensors[i] if i >= 0 else None for i in (op.inputs if op.inputs is not None else [])]
            outs = [tensors[i] for i in (op.outputs if op.outputs is not None else [])]
            ops.append(Op(n, kind, ins, outs, _options(kind, op.builtinOptions, activations)))
        inputs = [tensors[i] for i in graph.inputs]
        outputs = [tensors[i] for i in graph.outputs]
    except Exception as exc:  # the flatbuffer passed tflite_model.read, so this is a layout it cannot describe
        raise PipelineError(f"model file {path}: cannot read its operators ({type(exc).__name__}: {exc})") from None
    return Graph(path, ops, tensors, inputs, outputs)


def from_bytes(model_bytes: bytes) -> Graph:
    """read() of a model held in memory (a reordered model not written anywhere yet). The file is gone once this
    returns: what reads the model's bytes again through Graph.path (mcu_arena.layout, for an offline plan) needs
    read() of a file that is kept."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model_bytes)
        return read(path)


def layer_name(tensor_name: str) -> str | None:
    """`model/layer/op;...` (TFLite joins fused names with ';') -> `layer`, without tfmot's `quant_` prefix."""
    parts = tensor_name.removeprefix("NumericVerify/").split(";")[0].split("/")
    if len(parts) < 3:
        return None
    return parts[1].removeprefix("quant_")
