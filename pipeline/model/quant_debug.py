"""Which layers lose the most to int8: TFLite's quantization debugger, per layer.

The debugger quantizes the float model post-training, runs float and int8 side by side on test inputs and
reports each layer's output error. Errors are keyed by Keras layer name, so the profile can put them on the rows
of the deployed model (whose QAT layers carry a `quant_` prefix). The deployed model may be QAT-trained: the figure
says how sensitive each layer is to int8, measured on the float weights before QAT.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.model import tfenv
from pipeline.target.graph import layer_name
from pipeline.model.datasets import Dataset

SAMPLES = 32


def layer_errors(float_path: Path, data: Dataset) -> dict[str, dict[str, float]]:
    """Per Keras layer: RMSE and largest absolute error of its int8 output against float, over SAMPLES inputs."""
    from pipeline.model.tfenv import load_model

    tf = tfenv.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(load_model(float_path))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = data.x_train[:200].astype(np.float32)
    converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
    test = data.x_test[:SAMPLES].astype(np.float32)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([test[i:i + 1]] for i in range(len(test))))
    debugger.run()
    errors = {}
    for name, stats in debugger.layer_statistics.items():
        layer = layer_name(name)
        if layer is not None:
            errors[layer] = {"rmse": math.sqrt(float(stats["mean_squared_error"])),
                             "max_abs_error": float(stats["max_abs_error"])}
    return errors
