"""int16x8: int16 activations with int8 weights, converted in TFLite's 16x8 mode and run on the TFLM host runtime."""
import json

from conftest import assert_clean_error, run_invoke


def test_int16x8_converts_runs_on_tflm_and_profiles(tmp_path):
    proc = run_invoke("profile", "--precision=int16x8", "--board=nucleo-l4r5zi", "--epochs=5", "--max-drop=100",
                      f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "QAT skipped" in proc.stdout  # 16x8 is post-training
    converted = list((tmp_path / "_models" / "digits").glob("*/*-int16x8/model.tflite"))
    assert len(converted) == 1
    from pipeline.target import graph, tflite_model

    info = tflite_model.read(converted[0])
    assert info.inputs[0].dtype == info.outputs[0].dtype == "INT16" and tflite_model.precision(info) == "int16x8"
    stamp = json.loads((converted[0].parent / "stages" / "validate.json").read_text())["result"]
    assert stamp["tflm_metric"] >= 85.0  # the TFLM host runtime's int16 kernels, on held-back digits
    profile = json.loads((tmp_path / "nucleo-l4r5zi" / "digits" / "profile.json").read_text())
    g = graph.read(converted[0])
    assert profile["peak"]["live_bytes"] == max(g.live_bytes()) == 2 * (8 * 8 * 16 + 6 * 6 * 32)  # two bytes a value
    assert "int16x8 model: not calibrated for the int16 kernels" in profile["cost_source"]


def test_int16x8_firmware_is_refused_before_any_training(tmp_path):
    assert_clean_error(run_invoke("build", "--precision=int16x8", f"--build-dir={tmp_path}"),
                       "firmware for int16x8 models is not generated yet")
    assert not (tmp_path / "_models").exists()
    assert_clean_error(run_invoke("convert", "--precision=int4", f"--build-dir={tmp_path}"), "--precision")
