"""Read an int8 .tflite flatbuffer without TensorFlow: ops, tensor types, input/output quantization, sparsity.

Uses the schema module that ships with the tflite-micro package, so `invoke generate --tflite` on a model
trained elsewhere never imports TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

# Operators whose second input is a weight tensor that pruning zeroes.
WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
# Types a full-integer model may carry: int8 activations and weights, int32 biases and shapes,
# int16 for 16x8 activations. A float32 tensor means a float or hybrid model.
INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "BOOL", "UINT8"}


@dataclass
class TensorInfo:
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int


@dataclass
class TFLiteModel:
    path: Path
    size_bytes: int
    ops: list[str]  # distinct builtin op names, in order of first use
    custom_ops: list[str]
    tensor_types: dict[str, int]  # type name -> number of tensors
    float_tensors: list[str]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    weight_sparsity: float  # zeros among the int8 weights of conv / fully connected ops
    macs: int = 0  # multiply-accumulates of one inference (conv, depthwise, fully connected), for estimates


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def read(path: Path) -> TFLiteModel:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"model file {path} does not exist")
    data = path.read_bytes()
    # A flatbuffer starts with a 4-byte root offset, then the file identifier "TFL3".
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise PipelineError(f"model file {path} is not a TensorFlow Lite flatbuffer (no TFL3 identifier)")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        codes = []
        for oc in model.operatorCodes:
            # Ops numbered above 127 only fit in builtinCode; older files only fill deprecatedBuiltinCode.
            code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
            name = op_names.get(code, f"UNKNOWN_{code}")
            codes.append((name, oc.customCode.decode() if oc.customCode else None))
        if not model.subgraphs:
            raise PipelineError(f"model file {path} has no subgraph")
        ops, custom = [], []
        tensor_types: dict[str, int] = {}
        float_tensors: list[str] = []
        zeros = weights = 0
        macs = 0
        for graph in model.subgraphs:
            tensors = graph.tensors or []
            for t in tensors:
                tname = type_names.get(t.type, str(t.type))
                tensor_types[tname] = tensor_types.get(tname, 0) + 1
                if tname not in INTEGER_TYPES:
                    float_tensors.append(t.name.decode(errors="replace") if t.name else "?")
            for op in graph.operators or []:
                name, custom_name = codes[op.opcodeIndex]
                if name == "CUSTOM":
                    if custom_name not in custom:
                        custom.append(custom_name)
                elif name not in ops:
                    ops.append(name)
                if name in WEIGHTED_OPS and op.inputs is not None and len(op.inputs) > 1:
                    weight = tensors[op.inputs[1]]
                    macs += op_macs(name, [int(d) for d in weight.shape],
                                     [int(d) for d in tensors[op.outputs[0]].shape])
                    buffer = model.buffers[weight.buffer].data if weight.buffer < len(model.buffers) else None
                    if buffer is not None and len(buffer) and type_names.get(weight.type) == "INT8":
                        values = np.asarray(buffer, dtype=np.uint8)
                        zeros += int(np.sum(values == 0))
                        weights += values.size

        main = model.subgraphs[0]

        def info(index: int) -> TensorInfo:
            t = main.tensors[index]
            q = t.quantization
            scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
            zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
            return TensorInfo([int(d) for d in t.shape], type_names.get(t.type, str(t.type)), scale, zp)

        inputs = [info(i) for i in main.inputs]
        outputs = [info(i) for i in main.outputs]
    except PipelineError:
        raise
    except Exception as exc:  # a truncated or corrupted flatbuffer fails anywhere inside the generated reader
        raise PipelineError(f"model file {path} is corrupt: {type(exc).__name__}: {exc}") from None
    return TFLiteModel(path, len(data), ops, custom, tensor_types, float_tensors, inputs, outputs,
                       zeros / weights if weights else 0.0, macs)


def op_macs(op: str, weight_shape: list[int], output_shape: list[int]) -> int:
    out_elements = int(np.prod(output_shape))
    if op == "FULLY_CONNECTED":  # weights [units, inputs]
        return out_elements * weight_shape[-1]
    if op == "CONV_2D":  # weights [out_ch, kh, kw, in_ch]: every output needs kh*kw*in_ch
        return out_elements * int(np.prod(weight_shape[1:]))
    if op == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, ch]: every output needs kh*kw
        return out_elements * weight_shape[1] * weight_shape[2]
    return out_elements * int(np.prod(weight_shape[1:]))  # TRANSPOSE_CONV, roughly


def precision(model: TFLiteModel) -> str:
    """int8, or int16x8 (int16 activations, int8 weights) by the input tensor's type."""
    return "int16x8" if model.inputs and model.inputs[0].dtype == "INT16" else "int8"


def require_full_integer(model: TFLiteModel, allowed: tuple[str, ...] = ("INT8",)) -> None:
    """No float tensor anywhere, and input and output of an allowed integer type."""
    if model.float_tensors:
        require_full_int8(model)  # the same message
    for kind, tensors in (("input", model.inputs), ("output", model.outputs)):
        for t in tensors:
            if t.dtype not in allowed:
                raise PipelineError(f"model file {model.path}: the {kind} tensor is {t.dtype}, expected "
                                    f"{' or '.join(allowed)}")


def require_full_int8(model: TFLiteModel) -> None:
    """A firmware model must be int8 end to end: int8 input and output, no float tensor anywhere."""
    if model.float_tensors:
        kinds = ", ".join(sorted(k for k in model.tensor_types if k not in INTEGER_TYPES))
        raise PipelineError(
            f"model file {model.path} is not full-integer: {len(model.float_tensors)} tensors are {kinds} "
            f"(e.g. '{model.float_tensors[0]}'); convert it with full int8 quantization "
            "(a representative dataset, TFLITE_BUILTINS_INT8, int8 input and output)"
        )
    for kind, tensors in (("input", model.inputs), ("output", model.outputs)):
        for t in tensors:
            if t.dtype != "INT8":
                raise PipelineError(f"model file {model.path}: the {kind} tensor is {t.dtype}, expected INT8")
