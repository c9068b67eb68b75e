"""The arena rule (pipeline.target.mcu_arena): checked against the device measurements kept in boards/facts/arena/,
against TFLM's own planner on the host, and on layouts made to peak while planning."""
from pathlib import Path

import pytest

from pipeline.bench import ARENA_TARGET_OVER, arena_check
from pipeline.target import arena, graph, mcu_arena

FC_MODEL = Path(__file__).parent / "data" / "fc16_int8.tflite"


def test_generated_arena_against_every_kept_device_measurement():
    rows = arena_check()
    assert len(rows) >= 5 and {"kws_ref_model", "ad01_int8", "str_ww_ref_model"} <= {r["model"] for r in rows}
    for r in rows:
        where = f"{r['core']} {r['model']}"
        if not r["framework"]:  # the rule replays TFLM 90b983c's allocations: arena_used_bytes to the byte
            assert r["predicted_used"] == r["device_used"], where
        else:  # a framework's own TFLM (Zephyr's module) uses more: the framework's margin holds it
            assert r["predicted_used"] < r["device_used"] <= r["generated"], where
        assert r["generated"] >= r["device_used"], where  # never below
        if r["planning_peak"] and not r["framework"]:
            # TFLM needs more than arena_used_bytes shows while it plans: the arena is that peak, rounded to 16
            assert r["generated"] == mcu_arena.align(r["planning_bytes"]), where
        elif not r["planning_peak"]:
            assert r["over"] <= ARENA_TARGET_OVER, where
        if r["ran_in_bytes"]:  # the smallest arena the device ran in, bisected to 16 bytes on the device: the
            # generated one is no less, and at most the target above it
            assert 0 <= r["generated"] - r["ran_in_bytes"] <= ARENA_TARGET_OVER, where
        if r["failed_in_bytes"]:  # and the device refused this one: the generated arena is above it
            assert r["failed_in_bytes"] < r["generated"], where
    # every model whose planning peak puts the arena above the target is backed by a bisection on the device, on at
    # least one core (the bare port's TFLM, which the rule replays; a framework's TFLM keeps its margin on top)
    bisected = {r["model"] for r in rows if r["ran_in_bytes"]}
    assert {r["model"] for r in rows if r["planning_peak"] and r["over"] > ARENA_TARGET_OVER
            and not r["framework"]} <= bisected


def test_a_large_scratch_request_beside_small_tensors_costs_nothing():
    """str_ww's depthwise scratch on the Cortex-M4 (3,840 bytes) fits beside the tensors alive at its op."""
    row = next(r for r in arena_check(core="cortex-m4f") if r["model"] == "str_ww_ref_model")
    data = __import__("json").loads((Path(arena.__file__).resolve().parents[2] / "boards" / "facts" / "arena"
                                     / row["file"]).read_text())["models"]["str_ww_ref_model"]
    layout = mcu_arena.from_json(data["layout"])
    with_scratch = mcu_arena.greedy_head(mcu_arena.with_scratch(layout, data["scratch_per_op"]))
    without = mcu_arena.greedy_head(layout.buffers)
    assert max(data["scratch_per_op"]) >= 3840
    assert with_scratch - without < max(data["scratch_per_op"])  # not "the need plus the largest request"


def test_the_planner_replay_gives_tflm_head_and_the_host_need():
    """On the host: TFLM's recorded head equals the replayed planner's; the recording after AllocateTensors is not
    what the model needs (it peaks earlier), and the host's need is what runs while 16 bytes less does not. This
    model's pip runtime peaks in FULLY_CONNECTED's Prepare, above the planning rule: measure() probes the rule's
    figure once and searches only then."""
    model = FC_MODEL.read_bytes()
    rec = arena.record(model)
    layout = mcu_arena.layout(graph.read(FC_MODEL))
    assert mcu_arena.greedy_head(layout.buffers) == rec.head
    rule = mcu_arena.rule(rec, layout, [0] * len(layout.ops), bits=64)
    assert rule.need_bytes > rec.total and rule.planning_bytes > rule.used_bytes
    # tests/test_arena_search.py checks that measure() then finds the smallest arena that runs, above the rule's


def test_many_tiny_tensors_peak_while_planning():
    chain = [mcu_arena.Buffer(16, i, i + 1) for i in range(40)]
    layout = mcu_arena.ModelLayout(80, ["FULLY_CONNECTED"] * 40, 1, 1, chain, [0] * 40, [1, 1])
    r = mcu_arena.rule(None, layout, [0] * 40, bits=32, kernels="cmsis-nn")
    assert r.head_bytes == 32  # two 16-byte tensors alive at a time
    assert r.planning_bytes > r.used_bytes and r.need_bytes == mcu_arena.align(r.planning_bytes)
    # each tensor, even a weight, costs a TfLiteEvalTensor (12 bytes on 32 bits) in the tail and an AllocationInfo
    # (24) while planning: two more tensors, 72 bytes more, give or take the 16-byte alignment
    more = mcu_arena.ModelLayout(82, layout.ops, 1, 1, chain, layout.channels, [1, 1])
    grown = mcu_arena.rule(None, more, [0] * 40, bits=32, kernels="cmsis-nn").planning_bytes - r.planning_bytes
    assert 72 - 16 <= grown <= 72 + 16


def test_offline_offsets_are_kept_and_online_buffers_fill_the_gaps():
    buffers = [mcu_arena.Buffer(64, 0, 1, offline=0), mcu_arena.Buffer(64, 1, 2, offline=64),
               mcu_arena.Buffer(32, 2, 2)]  # alive with the second only: below it, at 0
    assert mcu_arena.greedy_head(buffers) == 128
    assert mcu_arena.greedy_head(buffers + [mcu_arena.Buffer(80, 1, 1)]) == 128 + 80


def test_a_corrupt_recording_is_no_recording():
    assert mcu_arena.parse_recording("no totals here") is None


@pytest.mark.parametrize("kernels", ["reference", "cmsis-nn"])
def test_unknown_operators_are_named(kernels):
    layout = mcu_arena.ModelLayout(3, ["CONV_2D", "GELU"], 1, 1, [mcu_arena.Buffer(16, 0, 2)], [8, 0], [1, 1])
    assert layout.unknown_ops() == ["GELU"]
    assert mcu_arena.rule(None, layout, [0, 0], kernels=kernels).tail_bytes > 0
