"""Operators TFLM's reference kernels can stop on (a TFLITE_CHECK, which calls abort(): the host process dies, a
device hangs or faults), found from the model alone, so a run that dies can say why and a build can warn first.

Known here:
- int8 SOFTMAX with int8 output over rows of 512 or more values. The reference kernel (tensorflow/lite/kernels/
  internal/reference/softmax.h) sums a row's exponentials in fixed point with 12 integer bits, takes the sum's
  reciprocal and checks that the output shift (bits of the sum above 1.0, + 23) is at most 31, i.e. that the sum is
  below 512. Each exponential is at most 1.0, so a row shorter than 512 never trips it; a longer row does when 512
  or more of its logits sit near its maximum (an untrained or random-weight model, an all-zero input). CMSIS-NN's
  arm_softmax_s8 has no such check.
"""
from __future__ import annotations

from dataclasses import dataclass

SOFTMAX_ROW_LIMIT = 512


@dataclass(frozen=True)
class AbortRisk:
    op: str  # "#7 SOFTMAX"
    reason: str  # one sentence
    kernels: str  # which kernels have the check ("reference")


def risks(g) -> list[AbortRisk]:
    """The model's operators that TFLM's reference kernels may abort on, with the reason."""
    found = []
    for op in g.ops:
        if op.kind != "SOFTMAX" or not op.inputs or op.inputs[0] is None or not op.outputs:
            continue
        row = op.inputs[0].shape[-1] if op.inputs[0].shape else 1
        if op.inputs[0].dtype == "INT8" and op.outputs[0].dtype == "INT8" and row >= SOFTMAX_ROW_LIMIT:
            found.append(AbortRisk(
                f"#{op.index} SOFTMAX",
                f"int8 SOFTMAX over rows of {row} values: TFLM's reference kernel aborts when a row's exponentials sum "
                f"to {SOFTMAX_ROW_LIMIT} or more (512+ logits near the row's maximum, e.g. an untrained model or an "
                "all-zero input); CMSIS-NN's kernel does not check. Softmax over shorter rows (reshape to "
                f"(k, n/k)), int16 output, or taking the logits without SOFTMAX avoids it",
                "reference"))
    return found


def explain(model_bytes: bytes) -> str:
    """One clause for an error message about a host TFLM run that died: the known risks, or a pointer to the likely
    cause when none is known."""
    from pipeline.target import graph

    try:
        found = risks(graph.from_bytes(model_bytes))
    except Exception:  # the model could not be read: the run's own failure is the message
        found = []
    if found:
        return "; ".join(f"{r.op}: {r.reason}" for r in found)
    return "a kernel's TFLITE_CHECK failed (an operator or parameter TFLM's reference kernels do not support)"
