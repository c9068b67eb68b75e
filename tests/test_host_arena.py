"""The host TFLM runtime runs every model in its measured arena, never in tflite_micro's default (10x the model's
bytes), which a small model with a large activation does not fit in."""
import json

import numpy as np

from conftest import run_invoke
from pipeline.model import tfenv


def _small_model_large_activation(path):
    """About 3 KB of int8 model whose first convolution writes a 64x64x16 tensor (65,536 bytes)."""
    k = tfenv.keras()
    model = k.Sequential([k.layers.Input((64, 64, 1)), k.layers.Conv2D(16, 1, activation="relu"),
                          k.layers.MaxPooling2D(8), k.layers.GlobalAveragePooling2D(), k.layers.Dense(2)])
    return _int8(model, (1, 64, 64, 1), path)


def _int8(model, shape, path):
    """The model as a full-int8 .tflite at `path`, calibrated on seeded random inputs in [-1, 1)."""
    tf = tfenv.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, shape).astype(np.float32)] for _ in range(10))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def test_generate_runs_a_small_model_with_a_large_activation(tmp_path):
    tflite = _small_model_large_activation(tmp_path / "wide.tflite")
    assert tflite.stat().st_size * 10 < 64 * 64 * 16  # the runtime's default arena would not hold the activation
    proc = run_invoke("generate", f"--tflite={tflite}", "--board=esp32", f"--build-dir={tmp_path / 'b'}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "b" / "esp32" / "wide" / "report.json").read_text())
    assert report["arena_bytes"] > 64 * 64 * 16


def _softmax_model(path, classes):
    """Dense(classes) + int8 SOFTMAX: with Keras' zero biases an all-zero input gives `classes` equal logits."""
    k = tfenv.keras()
    model = k.Sequential([k.layers.Input((8,)), k.layers.Dense(classes), k.layers.Softmax()])
    return _int8(model, (1, 8), path)


def test_a_kernel_that_aborts_on_the_host_is_named_not_a_silent_death(tmp_path):
    """TFLM's reference int8 SOFTMAX aborts (TFLITE_CHECK) when a row's exponentials sum to 512 or more: 600 equal
    logits do. The arena is still measured (TFLM allocated the model), the host run that dies says which operator
    and why in one line, and a row of 500 is not flagged."""
    from pipeline.errors import PipelineError
    from pipeline.model import validate
    from pipeline.target import arena, graph, tflm_aborts

    risky = _softmax_model(tmp_path / "sm600.tflite", 600)
    found = tflm_aborts.risks(graph.read(risky))
    assert [r.op for r in found] == ["#1 SOFTMAX"] and "600" in found[0].reason
    assert tflm_aborts.risks(graph.read(_softmax_model(tmp_path / "sm500.tflite", 500))) == []

    model_bytes = risky.read_bytes()
    measured = arena.measure(model_bytes)  # the all-zero probe input aborts after allocation: still an answer
    assert measured.arena_bytes > 600
    try:
        validate.run_tflm(model_bytes, np.zeros((2, 8), np.int8), measured.arena_bytes)
    except PipelineError as exc:
        assert "SIGABRT" in str(exc) and "#1 SOFTMAX" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("600 equal logits should trip TFLM's SOFTMAX check")
