"""Per-layer profile, the cost model and structured pruning: figures that add up, labelled estimates, real files."""
import csv
import json

import numpy as np
import pytest

from conftest import assert_clean_error, run_invoke
from pipeline import boards
from pipeline.target import costmodel, graph, kernels
from pipeline.errors import PipelineError


def test_graph_reads_operators_lifetimes_and_macs(esp32_build):
    g = graph.read(esp32_build["dir"] / "model.tflite")
    assert [op.kind for op in g.ops] == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                         "FULLY_CONNECTED", "SOFTMAX"]
    assert sum(op.macs for op in g.ops) == esp32_build["report"]["macs"] == 8 * 8 * 16 * 9 + 6 * 6 * 32 * 144 + 288 * 64 + 640
    # While the second conv runs, its input (8x8x16) and its output (6x6x32) are both in the arena.
    assert g.live_bytes()[1] == 8 * 8 * 16 + 6 * 6 * 32
    assert {t.name.split(";")[0] for t in g.live_at(1)} == {"digits/quant_conv2d/Relu", "digits/quant_conv2d_1/Relu"}


def test_profile_task_writes_consistent_files(esp32_build, tmp_path):
    import shutil

    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    proc = run_invoke("profile", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = build_dir / "nucleo-l4r5zi" / "digits"
    profile = json.loads((out / "profile.json").read_text())
    rows = profile["rows"]
    assert len(rows) == 7 and abs(sum(r["share"] for r in rows) - 1) < 0.01
    assert profile["totals"]["est_us"] == pytest.approx(sum(r["est_us"] for r in rows), rel=1e-3)
    assert profile["totals"]["macs"] == sum(r["macs"] for r in rows)
    assert profile["peak"]["live_bytes"] == max(r["live_bytes"] for r in rows)
    assert profile["top_latency"][0]["op"] == "CONV_2D" and rows[1]["hot"]
    assert rows[1]["scratch_bytes"] == 576  # CMSIS-NN's im2col buffer for the 3x3x16 conv
    assert profile["label"] == "estimate" and "ESTIMATE" in proc.stdout
    assert profile["totals"]["est_energy_uj"] == pytest.approx(
        boards.load_board("nucleo-l4r5zi").active_power_mw * profile["totals"]["est_us"] / 1000, rel=1e-2)
    with (out / "profile.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 7
    assert (out / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 | CONV_2D **hot** |" in (out / "profile.md").read_text()
    # Per-layer int8 sensitivity (TFLite's quantization debugger), on the layers that have a Keras twin.
    errors = {r["op"] + str(r["index"]): r["quant_rmse_steps"] for r in rows}
    assert all(errors[k] is not None and errors[k] >= 0 for k in ("CONV_2D0", "CONV_2D1", "FULLY_CONNECTED4",
                                                                 "FULLY_CONNECTED5"))
    assert "int8 error (RMSE, steps)" in (out / "profile.md").read_text()


def test_estimate_is_in_the_report_and_summary(esp32_build):
    report = esp32_build["report"]
    assert report["estimate_label"] == "estimate" and report["cost_model"] == "xtensa-lx6-esp-nn"
    assert report["latency_estimate_us"] > 0 and report["energy_estimate_uj"] > 0
    assert "(ESTIMATE, cost model xtensa-lx6-esp-nn)" in esp32_build["proc"].stdout
    assert "peak activations: 2176 bytes at #1 CONV_2D" in esp32_build["proc"].stdout


def test_every_board_has_a_cost_model_and_kernel_family():
    for board in boards.all_boards():
        model = costmodel.for_board(board)
        assert model.core == board.core and model.kernels == board.kernels and model.source
        assert board.kernels in kernels.FAMILIES


@pytest.mark.parametrize("text, message", [
    ("[meta]\ncore='x'\nkernels='y'\nsource='z'\nunit='cycles'\n", "op.default"),
    ("[meta]\ncore='x'\nkernels='y'\nsource='z'\nunit='seconds'\n[op.default]\nfixed=1\n", "unit must be"),
    ("[meta]\ncore='x'\nkernels='y'\nsource='z'\nunit='cycles'\n[op.default]\nfixed=-1\n", "non-negative"),
    ("[meta]\ncore='x'\nkernels='y'\nunit='cycles'\n[op.default]\nfixed=1\n", "'source'"),
])
def test_malformed_cost_model_is_refused_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message):
        costmodel.load(path)


def test_calibrated_cost_models_match_their_measurements():
    """What `invoke bench-costmodel` checks: every calibration model within +-20 % of its QEMU instruction count."""
    from pipeline import calibrate

    names = sorted(p.stem for p in calibrate.CALIBRATION_DIR.glob("*.json"))
    assert "cortex-m4f-cmsis-nn" in names
    for name in names:
        result = calibrate.check(name)
        assert len(result["models"]) >= 8
        for row in result["models"]:
            assert 0.8 <= row["ratio"] <= 1.2, (name, row)


def test_structured_pruning_removes_channels_exactly():
    """Zero the channels the plan removes: the original and the rebuilt smaller model then compute the same."""
    from pipeline.model import zoo, structured

    model = zoo.get_spec("digits").make(1.0)
    plan = structured.plan(model, 0.5)
    for layer in model.layers:
        group = plan.out_group.get(layer.name)
        if type(layer).__name__ in ("Conv2D", "Dense") and len(plan.keep.get(group, [])) < plan.size.get(group, 0):
            weights = layer.get_weights()
            drop = np.setdiff1d(np.arange(plan.size[group]), plan.keep[group])
            weights[0][..., drop] = 0
            weights[1][drop] = 0
            layer.set_weights(weights)
    smaller = structured.apply(model, plan)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), smaller.predict(x, verbose=0), atol=1e-6)
    assert [l.filters for l in smaller.layers if hasattr(l, "filters")] == [8, 16]
    assert smaller.layers[-2].units == 32 and smaller.layers[-1].units == 10  # the classifier keeps its 10 classes


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "mobilenet_v1", "autoencoder", "sine"])
def test_structured_pruning_works_for_every_zoo_model(name):
    from pipeline.model import zoo, structured

    spec = zoo.get_spec(name)
    model = spec.make(1.0)
    smaller, figures = structured.prune(model, 0.5)
    assert figures.params_after < 0.6 * figures.params_before and figures.channels_after < figures.channels_before
    x = np.zeros((1,) + spec.input_shape, dtype=np.float32)
    assert smaller.predict(x, verbose=0).shape == model.predict(x, verbose=0).shape
    if name == "resnet8":  # both branches of every residual Add keep the same channels
        for layer in smaller.layers:
            if type(layer).__name__ == "Add":
                shapes = {tuple(t.shape[1:]) for t in layer.input}
                assert len(shapes) == 1, layer.name


def test_structured_build_is_smaller_and_faster_with_its_accuracy_measured(esp32_build, tmp_path):
    import shutil

    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    proc = run_invoke("build", "--board=esp32", "--prune=structured", "--sparsity=0.5", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((build_dir / "esp32" / "digits" / "report.json").read_text())
    p = report["pruning"]
    assert p["kind"] == "structured" and p["pruned"]["macs"] < 0.6 * p["unpruned"]["macs"]
    assert p["pruned"]["tflite_bytes"] < 0.7 * p["unpruned"]["tflite_bytes"]
    assert p["pruned"]["latency_estimate_us"] < p["unpruned"]["latency_estimate_us"]
    assert report["tflm_metric"] >= 95.0 and p["unpruned"]["metric"] >= 95.0  # int8 accuracy on the TFLM runtime
    assert "pruning (structured, 50% of channels removed) vs the unpruned model" in proc.stdout
    # The magnitude build next to it says plainly that its zeros save nothing on the device.
    assert "saves 0 bytes of flash and 0 cycles" in esp32_build["proc"].stdout
    assert esp32_build["report"]["pruning"]["flash_saved_bytes"] == 0


def test_unknown_prune_kind_is_one_line():
    assert_clean_error(run_invoke("optimize", "--prune=random"), "--prune must be one of magnitude, structured")
