"""The cost model beyond the zoo: probe models (pipeline.model.probes) and the fit on the designed grid."""
from __future__ import annotations

import pytest

from pipeline.errors import PipelineError
from pipeline.model import probes
from pipeline.target import costmodel, graph


@pytest.mark.slow  # two TensorFlow conversions: ~20-50 s on a loaded machine
def test_probe_per_tensor_dense_and_kx1_depthwise(tmp_path):
    """The held-out probes are what they claim: fully connected weights with one scale per tensor, depthwise
    kernels k x 1 with k from 3 to 15."""
    fc = graph.read(probes.make("held_fc_per_tensor", tmp_path / "fc.tflite"))
    dense = [op for op in fc.ops if op.kind == "FULLY_CONNECTED"]
    assert dense and not any(op.weights.per_channel for op in dense)
    dw = graph.read(probes.make("held_dw_kx1", tmp_path / "dw.tflite"))
    kernels = sorted(op.weights.shape[1] for op in dw.ops if op.kind == "DEPTHWISE_CONV_2D")
    assert kernels == [3, 5, 7, 9, 15] and all(op.weights.shape[2] == 1 for op in dw.ops
                                               if op.kind == "DEPTHWISE_CONV_2D")
    assert not list(tmp_path.glob("*.tmp*"))


def test_probe_unknown_name(tmp_path):
    with pytest.raises(PipelineError, match="unknown probe model 'nope'"):
        probes.make("nope", tmp_path / "x.tflite")
    assert not list(tmp_path.iterdir())


def _op(kind, in_shape, out_shape, weights=None, per_channel=True, **options):
    t = lambda i, shape, const=False, pc=False: graph.Tensor(i, f"t{i}", tuple(shape), "INT8", const, pc, 0.1)
    inputs = [t(0, in_shape)] + ([t(1, weights, True, per_channel)] if weights else [])
    return graph.Op(0, kind, inputs, [t(2, out_shape)], options)


@pytest.mark.parametrize("op, klass", [
    (_op("CONV_2D", (1, 8, 8, 16), (1, 8, 8, 32), (32, 1, 1, 16)), "CONV_2D_1X1"),
    (_op("CONV_2D", (1, 8, 8, 16), (1, 4, 4, 32), (32, 1, 1, 16), stride_h=2, stride_w=2), "CONV_2D_1X1_STRIDED"),
    (_op("CONV_2D", (1, 1, 32, 16), (1, 1, 32, 8), (8, 1, 5, 16)), "CONV_2D_1XN"),
    (_op("CONV_2D", (1, 1, 32, 3), (1, 1, 32, 8), (8, 1, 5, 3)), "CONV_2D"),  # 1 x 3 channels: not % 4
    (_op("CONV_2D", (1, 8, 8, 16), (1, 8, 8, 8), (8, 3, 3, 16)), "CONV_2D"),
    (_op("DEPTHWISE_CONV_2D", (1, 8, 8, 16), (1, 8, 8, 16), (1, 3, 3, 16)), "DEPTHWISE_CONV_2D_3X3"),
    (_op("DEPTHWISE_CONV_2D", (1, 30, 1, 40), (1, 26, 1, 40), (1, 5, 1, 40)), "DEPTHWISE_CONV_2D_OPT"),
    (_op("DEPTHWISE_CONV_2D", (1, 8, 8, 16), (1, 8, 8, 32), (1, 3, 3, 32), depth_multiplier=2), "DEPTHWISE_CONV_2D"),
    (_op("DEPTHWISE_CONV_2D", (1, 8, 8, 16), (1, 8, 8, 16), (1, 3, 3, 16), dilation_h=2, dilation_w=2),
     "DEPTHWISE_CONV_2D_DILATED"),
    (_op("FULLY_CONNECTED", (1, 64), (1, 10), (10, 64)), "FULLY_CONNECTED"),
    (_op("FULLY_CONNECTED", (1, 64), (1, 10), (10, 64), per_channel=False), "FULLY_CONNECTED_PER_TENSOR"),
])
def test_cost_class_follows_cmsis_nn_dispatch(op, klass):
    assert costmodel.cost_class(op) == klass


def test_op_without_a_rule_is_estimated_by_the_nearest_and_says_so(tmp_path):
    """A cost model without MEAN estimates it by average pooling's rule, labelled; without any near rule, by its
    default rule, labelled; a class missing from an older cost model falls back along its chain, unlabelled."""
    path = tmp_path / "m.toml"
    path.write_text("[meta]\ncore='c'\nkernels='k'\nsource='s'\nunit='instructions'\n"
                    "[op.AVERAGE_POOL_2D]\nfixed=100\nmac=2\n[op.DEPTHWISE_CONV_2D]\nmac=7\n[op.default]\nfixed=50\nout=1\n")
    model = costmodel.load(path)
    mean = _op("MEAN", (1, 4, 4, 8), (1, 8))
    name, coeffs, note = model.rule(costmodel.cost_class(mean), "MEAN")
    assert name == "AVERAGE_POOL_2D" and "no rule for MEAN" in note and "AVERAGE_POOL_2D" in note
    assert costmodel.cost(coeffs, costmodel.features(mean)) == 100 + 2 * 128  # the whole input is its window
    odd = _op("GATHER", (1, 4), (1, 4))
    name, _, note = model.rule("GATHER", "GATHER")
    assert name == "default" and "no rule for GATHER" in note and model.units(odd) > 0
    dw = _op("DEPTHWISE_CONV_2D", (1, 30, 1, 40), (1, 26, 1, 40), (1, 5, 1, 40))
    assert model.rule(costmodel.cost_class(dw), dw.kind)[::2] == ("DEPTHWISE_CONV_2D", "")


def _grid_calibrated():
    from pipeline import calibrate

    return [p.stem for p in sorted(calibrate.CALIBRATION_DIR.glob("*.json"))
            if any(r.get("group") == "grid" for r in calibrate.load_measurements(p.stem)["rows"])]


# Where a calibrated cost model misses the targets today, by (group, model): the test fails when a miss is added
# AND when one is fixed, so this list stays what `invoke bench-costmodel` prints.
# - Cortex-M33 without DSP: CMSIS-NN's plain-C k x 1 depthwise (DEPTHWISE_CONV_2D_OPT ops at 0.64-0.73, which the
#   grid's mixed k x 1 / 5x5 / 1x5 kernels do not pin down).
KNOWN_MISSES = {
    "cortex-m33-nodsp-cmsis-nn": {("grid", "grid_dw_generic"), ("grid", "grid_dw_channels"),
                                  ("held_out", "held_dw_kx1"), ("mlperf", "str_ww")},
}


def test_grid_calibrated_cost_models_meet_the_targets_outside_the_grid():
    """On the kept QEMU measurements: every model of every group (the grid it is fitted on, held-out probes, the
    zoo, MLPerf Tiny's reference models) within +-10 %, every operator above 5 % of its model within +-25 %, but
    for the misses listed in KNOWN_MISSES."""
    from pipeline import calibrate

    names = _grid_calibrated()
    assert "cortex-m4f-cmsis-nn" in names
    for name in names:
        result = calibrate.check(name)
        groups = {t["group"] for t in result["models"]}
        assert {"grid", "held_out", "mlperf"} <= groups, (name, groups)
        misses = {(t["group"], t["model"]) for t in result["models"] if not t["meets"]}
        assert misses == KNOWN_MISSES.get(name, set()), (name, misses)


def test_kept_cost_model_is_the_grid_fit_of_its_measurements():
    """The cost model file is what the fit gives on the grid rows alone: changing every check row's measurement
    changes nothing."""
    from pipeline import calibrate

    for name in _grid_calibrated():
        rows = calibrate.load_measurements(name)["rows"]
        kept = costmodel.load(costmodel.COSTS_DIR / f"{name}.toml").ops
        fitted = calibrate.fit(rows)
        assert set(fitted) <= set(kept)
        for klass, coeffs in fitted.items():  # the file keeps 6 significant digits
            assert kept[klass] == pytest.approx(coeffs, rel=1e-5, abs=1e-3), klass
        skewed = [{**r, "instructions": r["instructions"] * 3} if r["group"] != "grid" else r for r in rows]
        assert calibrate.fit(skewed) == fitted
