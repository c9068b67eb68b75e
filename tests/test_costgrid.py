"""The cost model beyond the zoo: probe models (pipeline.model.probes) and the fit on the designed grid."""
from __future__ import annotations

import pytest

from pipeline.errors import PipelineError
from pipeline.model import probes
from pipeline.target import graph


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
