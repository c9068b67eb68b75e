"""Stage 5: the test-split metric of the float Keras model, the int8 TFLite interpreter and the TFLM runtime.

Accuracy (percent) for classifiers, mean absolute error for regression. The int8 TFLite interpreter and
TFLM should agree bit for bit; the largest difference of their raw int8 outputs is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.model.datasets import Dataset
from pipeline.errors import PipelineError
from pipeline.target import arena
from pipeline.target.tflite_model import TensorInfo


@dataclass
class Metrics:
    metric_name: str  # "accuracy" (percent) or "mae"
    float_metric: float | None
    int8_metric: float | None
    tflm_metric: float | None
    max_output_diff: int | None  # largest |TFLM - TFLite| over the raw int8 outputs
    test_examples: int


def quantize(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """Float inputs to the model's integer input type: int8, or int16 for a 16x8 model."""
    kind = np.int16 if t.dtype == "INT16" else np.int8
    info = np.iinfo(kind)
    return np.clip(np.round(x / t.scale) + t.zero_point, info.min, info.max).astype(kind)


def dequantize(q: np.ndarray, t: TensorInfo) -> np.ndarray:
    return (q.astype(np.float32) - t.zero_point) * t.scale


def score(task: str, predictions: np.ndarray, targets: np.ndarray) -> float:
    if task == "classification":
        return float(np.mean(np.argmax(predictions, axis=-1) == targets) * 100.0)
    return float(np.mean(np.abs(predictions.reshape(targets.shape) - targets)))


def run_tflite(model_bytes: bytes, x_q: np.ndarray) -> np.ndarray:
    from pipeline.model import tfenv

    tf = tfenv.tf()
    # Reference kernels, as TFLM uses: the default XNNPACK delegate rounds differently by an int8 step or two.
    interpreter = tf.lite.Interpreter(
        model_content=model_bytes, experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF
    )
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for sample in x_q:
        interpreter.set_tensor(inp["index"], sample[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(outputs)


def run_tflm(model_bytes: bytes, x_q: np.ndarray, arena_size: int | None = None) -> np.ndarray:
    """The TFLM host runtime's raw outputs for x_q, in the model's measured arena (`arena_size` where the caller has
    it, else measured: pipeline.target.arena.host_run_bytes)."""
    from tflite_micro import runtime

    arena_size = arena.host_run_bytes(model_bytes, arena_size)
    from pipeline.target import graph, tflm_aborts

    if tflm_aborts.risks(graph.from_bytes(model_bytes)):
        return _run_tflm_in_child(model_bytes, x_q, arena_size)
    try:
        interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
        outputs = []
        for sample in x_q:
            interpreter.set_input(sample[np.newaxis], 0)
            interpreter.invoke()
            outputs.append(np.asarray(interpreter.get_output(0))[0].copy())
    except RuntimeError as exc:
        raise PipelineError(f"the TFLM host runtime could not run the model: {exc}") from None
    return np.stack(outputs)


_CHILD = """
import sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
x = np.load(sys.argv[2])
interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[4]))
outputs = []
for sample in x:
    interpreter.set_input(sample[np.newaxis], 0)
    interpreter.invoke()
    outputs.append(np.asarray(interpreter.get_output(0))[0].copy())
np.save(sys.argv[3], np.stack(outputs))
"""


def _run_tflm_in_child(model_bytes: bytes, x_q: np.ndarray, arena_size: int) -> np.ndarray:
    """run_tflm in a child process, for a model one of whose kernels may abort (pipeline.target.tflm_aborts): an
    abort there kills the child, and the build stops with the reason instead of dying without a word."""
    import signal
    import subprocess
    import sys
    import tempfile

    from pipeline.target import tflm_aborts

    with tempfile.TemporaryDirectory() as tmp:
        model, inputs, outputs = Path(tmp) / "m.tflite", Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        model.write_bytes(model_bytes)
        np.save(inputs, x_q)
        done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(inputs), str(outputs), str(arena_size)],
                              capture_output=True, text=True)
        if done.returncode < 0:
            raise PipelineError(f"TFLM's host runtime died ({signal.Signals(-done.returncode).name}) running the test "
                                f"inputs: {tflm_aborts.explain(model_bytes)}")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PipelineError(f"the TFLM host runtime could not run the model: {last}")
        return np.load(outputs)


def validate(tflite_path: Path, float_path: Path | None, data: Dataset, input_t: TensorInfo,
             output_t: TensorInfo) -> Metrics:
    model_bytes = Path(tflite_path).read_bytes()
    x_q = quantize(data.x_test, input_t)
    tflite_out = run_tflite(model_bytes, x_q)
    tflm_out = run_tflm(model_bytes, x_q)
    float_metric = None
    if float_path is not None:
        from pipeline.model.tfenv import load_model

        float_metric = score(data.task, load_model(float_path).predict(data.x_test, verbose=0), data.y_test)
    return Metrics(
        metric_name="accuracy" if data.task == "classification" else "mae",
        float_metric=float_metric,
        int8_metric=score(data.task, dequantize(tflite_out, output_t), data.y_test),
        tflm_metric=score(data.task, dequantize(tflm_out, output_t), data.y_test),
        max_output_diff=int(np.max(np.abs(tflite_out.astype(np.int32) - tflm_out.astype(np.int32)))),
        test_examples=len(data.x_test),
    )


def check_drop(metrics: Metrics, max_drop: float, y_test: np.ndarray) -> float:
    """Fail when int8 is worse than float by more than max_drop.

    For classifiers max_drop is in accuracy points. For regression it is a percentage of the test targets'
    range, so one number means the same for any scale of target.
    """
    if metrics.float_metric is None or metrics.int8_metric is None:
        return 0.0
    worst = min(metrics.int8_metric, metrics.tflm_metric) if metrics.metric_name == "accuracy" \
        else max(metrics.int8_metric, metrics.tflm_metric)
    if metrics.metric_name == "accuracy":
        drop = metrics.float_metric - worst
        if drop > max_drop:
            raise PipelineError(
                f"int8 accuracy {worst:.2f}% is {drop:.2f} points below float {metrics.float_metric:.2f}% "
                f"(allowed --max-drop={max_drop}): try lower --sparsity, more --epochs, or keep QAT on"
            )
        return drop
    span = float(np.max(y_test) - np.min(y_test)) or 1.0
    drop = (worst - metrics.float_metric) / span * 100.0
    if drop > max_drop:
        raise PipelineError(
            f"int8 MAE {worst:.4f} exceeds float MAE {metrics.float_metric:.4f} by {drop:.2f}% of the target range "
            f"(allowed --max-drop={max_drop}): try lower --sparsity or more --epochs"
        )
    return drop
