"""Kernel scratch rules against the real size functions (ESP-NN, CMSIS-NN) compiled for the host, and the arena
that includes them."""
import json
from pathlib import Path

import pytest

from pipeline.target import kernels
from pipeline.target.graph import Op, Tensor

DATA = Path(__file__).parent / "data"
KINDS = {"conv": "CONV_2D", "depthwise_conv": "DEPTHWISE_CONV_2D", "fully_connected": "FULLY_CONNECTED",
         "average_pool": "AVERAGE_POOL_2D", "max_pool": "MAX_POOL_2D", "softmax": "SOFTMAX", "add": "ADD",
         "mul": "MUL"}


def op_from(case: dict) -> Op:
    p = case["params"]
    inp = Tensor(0, "in", tuple(p["input_shape"]), "INT8", False)
    out = Tensor(2, "out", tuple(p["output_shape"]), "INT8", False)
    ins = [inp]
    if "filter_shape" in p:
        ins.append(Tensor(1, "w", tuple(p["filter_shape"]), "INT8", True, p.get("per_channel_weights", True)))
    options = {k: p[k] for k in ("stride_h", "stride_w", "dilation_h", "dilation_w", "depth_multiplier") if k in p}
    return Op(0, KINDS[case["kernel"]], ins, [out], options)


def cases(name):
    return json.loads((DATA / name).read_text())["cases"]


@pytest.mark.parametrize("case", cases("espnn_scratch_cases.json"),
                         ids=lambda c: f"{c['kernel']}-{c['target']}-{c['esp_nn']}")
def test_esp_nn_rules_match_the_compiled_size_functions(case):
    op = op_from(case)
    if op.weights is not None:
        shape = kernels.ConvShape.of(op)
        assert (shape.ph, shape.pw) == (case["params"]["pad_h"], case["params"]["pad_w"])
    family = kernels.EspNN()
    if case["target"] != "esp32s3" or op.kind == "SOFTMAX":
        assert family.scratch(op, case["target"]) == case["scratch_bytes"]
        return
    s = kernels.ConvShape.of(op)
    old = case["esp_nn"] == "1.2.0"
    if op.kind == "CONV_2D":
        got = family.s3_conv(s, old=old)
    else:
        got = family.s3_depthwise_before_1_2_1(s) if old else family.s3_depthwise(s)
    assert got == case["scratch_bytes"]
    # The arena is sized for whichever esp-nn the component manager picks: never below either version's request.
    assert family.scratch(op, "esp32s3") >= case["scratch_bytes"]


@pytest.mark.parametrize("case", cases("cmsisnn_scratch_cases.json"), ids=lambda c: f"{c['kernel']}-{c['target']}")
def test_cmsis_nn_rules_match_the_compiled_buffer_size_functions(case):
    assert kernels.CmsisNN().scratch(op_from(case), case["target"]) == case["scratch_bytes"]


def test_the_issue_case_esp32s3_needs_more_than_the_whole_host_arena():
    """digits' second conv (8x8x16 in, 32 3x3 filters): ESP-NN on the S3 asks ~9.4-12.6 KB, the ESP32 nothing."""
    case = {"kernel": "conv", "params": {"input_shape": [1, 8, 8, 16], "filter_shape": [32, 3, 3, 16],
                                         "output_shape": [1, 6, 6, 32], "stride_h": 1, "stride_w": 1}}
    op = op_from(case)
    assert kernels.EspNN().scratch(op, "esp32s3") == 9408  # VALID padding, esp-nn 1.2.3
    assert kernels.EspNN().scratch(op, "esp32") == 0
    assert kernels.CmsisNN().scratch(op, "cortex-m4f") == 576


def test_arena_margin_per_kernel_family():
    from pipeline.target import arena

    assert kernels.CmsisNN.margin_bytes == kernels.Reference.margin_bytes == 0  # verified under QEMU
    assert kernels.EspNN.margin_bytes == 1024  # not verified on a device here
    assert arena.arena_size_for(5344, 0) == 5344 and arena.arena_size_for(5345, 0) == 5360  # up to 16, no margin
    assert arena.arena_size_for(4816, 1024) == 5840  # rounded down within the margin, never above the cap
