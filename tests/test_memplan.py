"""The offline memory plan: never overlapping tensors alive together, never below the lower bound, embedded so the
host TFLM runtime honours it with bit-identical outputs."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.target import arena, graph, memplan
from pipeline.model import validate


@st.composite
def lifetimes(draw):
    steps = draw(st.integers(1, 12))
    count = draw(st.integers(1, 14))
    sizes, spans = {}, {}
    for i in range(count):
        first = draw(st.integers(0, steps - 1))
        last = draw(st.integers(first, steps - 1))
        sizes[i] = memplan.aligned(draw(st.integers(1, 5000)))
        spans[i] = (first, last)
    return sizes, spans, steps


@settings(max_examples=300, deadline=None)
@given(lifetimes())
def test_plan_never_overlaps_live_tensors_and_never_beats_the_bound(case):
    sizes, spans, steps = case
    plan = memplan.plan_tensors(sizes, spans, steps)
    assert memplan.overlaps(plan) == []
    assert plan.head_bytes >= plan.lower_bound
    assert all(offset % memplan.ALIGN == 0 for offset in plan.offsets.values())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 40000), min_size=2, max_size=20))
def test_a_chain_is_planned_at_its_lower_bound(raw_sizes):
    """Each tensor is written by one op and read by the next: two alive at a time, the bound is reachable."""
    sizes = {i: memplan.aligned(s) for i, s in enumerate(raw_sizes)}
    spans = {i: (max(0, i - 1), i) for i in sizes}
    plan = memplan.plan_tensors(sizes, spans, len(sizes))
    assert plan.head_bytes == plan.lower_bound


def test_embedded_plan_runs_bit_exact_and_is_read_back(esp32_build, tmp_path):
    model_bytes = (esp32_build["dir"] / "model.tflite").read_bytes()
    path = tmp_path / "m.tflite"
    path.write_bytes(model_bytes)
    g = graph.read(path)
    plan = memplan.plan(g)
    planned = memplan.embed(model_bytes, plan, len(g.tensors))
    offsets = memplan.planned_offsets(planned)
    assert len(offsets) == len(g.tensors)
    assert {i: o for i, o in enumerate(offsets) if o != -1} == plan.offsets
    assert all(offsets[t.index] == -1 for t in g.tensors if t.constant)  # weights stay in flash
    x = np.random.default_rng(0).integers(-128, 128, size=(8, 8, 8, 1), dtype=np.int8)
    np.testing.assert_array_equal(validate.run_tflm(model_bytes, x), validate.run_tflm(planned, x))
    assert arena.measure(planned).head_bytes == plan.head_bytes  # TFLM places the tensors where the plan says
    assert memplan.planned_offsets(model_bytes) is None


def test_build_reports_both_plans_and_the_bound(esp32_build):
    plan = esp32_build["report"]["memory_plan"]
    assert plan["requested"] == "offline" and plan["lower_bound_bytes"] == 2176
    assert plan["offline_head_bytes"] == plan["lower_bound_bytes"] <= plan["tflm_head_bytes"]
    assert "memory plan: activations 2176 bytes offline (at the lower bound 2176)" in esp32_build["proc"].stdout
