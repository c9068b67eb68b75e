"""Stage 4: convert the (QAT) Keras model to a full-integer int8 .tflite and check every tensor type."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.model import tfenv
from pipeline.target import tflite_model
from pipeline.model.datasets import Dataset
from pipeline.errors import PipelineError
from pipeline.model.tfenv import load_model

REPRESENTATIVE_SAMPLES = 200


@dataclass
class ConvertResult:
    tflite_bytes: int
    float_tflite_bytes: int  # the same model converted without quantization, for the size ratio
    ops: list[str]


def _float_size(model) -> int:
    tf = tfenv.tf()
    return len(tf.lite.TFLiteConverter.from_keras_model(model).convert())


PRECISIONS = ("int8", "int16x8")


def quantize(model, representative, precision: str = "int8", per_tensor_dense: bool = False) -> bytes:
    """The one full-integer conversion of a Keras model: int8, or int16x8 (TFLite's 16x8 mode: int16 activations,
    int8 weights). `representative` yields lists of float32 input batches. `per_tensor_dense` gives fully connected
    layers one weight scale per tensor (TF's converter flag `_experimental_disable_per_channel_quantization_for_
    dense_layers`), as some published models have."""
    tf = tfenv.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if per_tensor_dense:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if precision == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many types; its first line names the layer or op
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{precision} conversion failed: {first}") from None


def convert(model_path: Path, float_path: Path, data: Dataset, seed: int, out_path: Path,
            precision: str = "int8") -> ConvertResult:
    """Full-integer conversion of a stage's model (see quantize), checked tensor by tensor."""
    model = load_model(model_path)
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(data.x_train))[:REPRESENTATIVE_SAMPLES]

    def representative():
        for i in picks:
            yield [data.x_train[i : i + 1].astype(np.float32)]

    flatbuffer = quantize(model, representative, precision)
    tmp = cache.tmp_path(out_path)
    tmp.write_bytes(flatbuffer)
    try:
        info = tflite_model.read(tmp)
        tflite_model.require_full_integer(info, ("INT16",) if precision == "int16x8" else ("INT8",))
    except PipelineError:
        tmp.unlink()
        raise
    tmp.replace(out_path)
    return ConvertResult(len(flatbuffer), _float_size(load_model(float_path)), info.ops)
