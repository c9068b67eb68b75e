"""Every zoo model builds, trains on a user dataset, prunes, QATs, converts to int8 and gets firmware inputs."""
import json
import re

import numpy as np
import pytest

from pipeline.model import zoo
from pipeline.target import tflite_model
from pipeline.build import Options, Pipeline
from pipeline.target.tflm_ops import RESOLVER_METHODS

METHOD_TO_OP = {method: op for op, method in RESOLVER_METHODS.items()}


def user_npz(path, spec, n_train=32, n_test=8, seed=0):
    """A small user dataset of the model's shape, with a learnable signal: class k brightens part k of the input."""
    rng = np.random.default_rng(seed)
    x = rng.random((n_train + n_test,) + spec.input_shape).astype(np.float32) * 0.2
    if spec.num_classes:
        y = np.arange(n_train + n_test) % spec.num_classes
        flat = x.reshape(len(x), -1)
        chunk = flat.shape[1] // spec.num_classes
        for i, label in enumerate(y):
            flat[i, label * chunk:(label + 1) * chunk] += 0.8
    else:
        y = x.reshape(len(x), -1)[:, :1]
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ds_cnn", "mobilenet_v1", "resnet8", "autoencoder"])
def test_mlperf_tiny_model_goes_from_user_data_to_firmware_inputs(name, tmp_path):
    spec = zoo.get_spec(name)
    data = user_npz(tmp_path / f"{name}.npz", spec)
    # --max-drop is wide: one epoch on 32 examples says nothing about accuracy, only that every stage runs.
    opts = Options(model=name, board="nucleo-l4r5zi", data=str(data), epochs=1, max_drop=100.0, build_root=tmp_path)
    outcome = Pipeline(opts, log=lambda _: None).run_board(with_firmware=False)
    report = json.loads(outcome.report_path.read_text())
    out = tmp_path / "nucleo-l4r5zi" / name
    info = tflite_model.read(out / "model.tflite")
    tflite_model.require_full_int8(info)
    assert info.inputs[0].shape[1:] == list(spec.input_shape)
    header = (out / "generated" / "model_ops.h").read_text()
    assert [METHOD_TO_OP[m] for m in re.findall(r"resolver\.(Add\w+)\(\)", header)] == info.ops == report["ops"]
    # the Cortex-M4's need (pipeline.target.mcu_arena): what arena_used_bytes() will say, or TFLM's peak while it
    # allocates where that is higher; below the 64-bit host's
    used, margin = report["arena_device_used_bytes"], report["arena_margin_bytes"]  # Zephyr's TFLM module's margin
    assert used + margin <= report["arena_bytes"] <= max(used + 256, report["arena_device_planning_bytes"] + 16) + margin
    assert report["arena_bytes"] < report["arena_measured_bytes"]
    # A step or two apart at most (seen: 1 on the post-training-quantized autoencoder's FULLY_CONNECTED).
    assert report["tflm_vs_tflite_max_output_diff"] <= 2
    assert report["sparsity"] > 0.3  # pruning at 0.5 survived QAT and conversion
    if spec.task == "regression":
        assert report["metric"] == "mae"
    assert report["qat"] is (spec.qat_unsupported is None)
    expected_ops = {"ds_cnn": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX"},
                    "mobilenet_v1": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX"},
                    "resnet8": {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "SOFTMAX"},
                    "autoencoder": {"FULLY_CONNECTED"}}[name]
    assert expected_ops <= set(report["ops"])
    plan = report["memory_plan"]  # the offline plan reaches the bound on these chains (within 5 % on resnet8)
    assert plan["offline_head_bytes"] <= 1.05 * plan["lower_bound_bytes"]
    if name == "mobilenet_v1":  # TFLM's greedy plan leaves about a quarter of the activations' bytes unused here
        assert plan["used"] == "offline" and plan["offline_total_bytes"] < 0.9 * plan["tflm_total_bytes"]


def test_sine_regression_builds_with_mae(tmp_path):
    opts = Options(model="sine", board="rp2040", epochs=60, build_root=tmp_path)
    outcome = Pipeline(opts, log=lambda _: None).run_board(with_firmware=False)
    report = outcome.report
    assert report["metric"] == "mae"
    assert report["float_metric"] < 0.25 and report["tflm_metric"] < 0.25  # noise alone is 0.08
    assert report["ops"] == ["FULLY_CONNECTED"]


def test_width_trades_size_for_capacity(tmp_path):
    """Half the width gives a smaller model and arena: the knob the fit error points to."""
    sizes = {}
    for width in (1.0, 0.5):
        opts = Options(model="digits", board="esp32", epochs=2, width=width, max_drop=100.0,
                       build_root=tmp_path / str(width))
        sizes[width] = Pipeline(opts, log=lambda _: None).run_board(with_firmware=False).report
    assert sizes[0.5]["tflite_bytes"] < 0.5 * sizes[1.0]["tflite_bytes"]
    assert sizes[0.5]["arena_bytes"] < sizes[1.0]["arena_bytes"]
    assert sizes[0.5]["params"] < sizes[1.0]["params"]
