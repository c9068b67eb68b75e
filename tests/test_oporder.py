"""The operator order: the topological order with the lowest activation peak, outputs bit-identical (issue 18)."""
import json

import numpy as np
import pytest

from conftest import run_invoke
from pipeline.model import probes
from pipeline.target import arena, graph, oporder


@pytest.fixture(scope="module")
def branching(tmp_path_factory):
    """Inception-like: four branches concatenated, twice (pipeline.model.probes.held_concat)."""
    return probes.make("held_concat", tmp_path_factory.mktemp("oporder") / "held_concat.tflite")


def _topological(g, order):
    produced = {t.index: op.index for op in g.ops for t in op.outputs}
    done = set()
    for op in order:
        if any(produced.get(t.index) not in done for t in g.ops[op].activation_in if t.index in produced):
            return False
        done.add(op)
    return sorted(order) == list(range(len(g.ops)))


def test_a_branching_model_gets_a_lower_peak_and_the_same_outputs(branching):
    g = graph.read(branching)
    found = oporder.best_order(g)
    assert found.changed and _topological(g, found.order)
    assert found.peak_bytes < found.original_peak_bytes == max(g.live_bytes())
    assert oporder.peak(g, found.order) == found.peak_bytes

    original = branching.read_bytes()
    reordered = oporder.reorder(original, found.order)
    assert arena.measure(reordered).measured_bytes < arena.measure(original).measured_bytes  # TFLM's own planner
    from tflite_micro import runtime

    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
        outs = []
        for model in (original, reordered):
            it = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
            it.set_input(x, 0)
            it.invoke()
            outs.append(np.asarray(it.get_output(0)).copy())
        assert np.array_equal(*outs)


def test_a_chain_keeps_its_order(tmp_path):
    g = graph.read(probes.make("held_fc_per_tensor", tmp_path / "chain.tflite"))
    found = oporder.best_order(g)
    assert not found.changed and found.order == list(range(len(g.ops)))
    with pytest.raises(ValueError):
        oporder.reorder((tmp_path / "chain.tflite").read_bytes(), [0, 0])


def test_generate_deploys_the_lower_peak_order(branching, tmp_path):
    """The board's model.tflite runs in the new order, the report says what it saved, and the profile's rows follow
    the deployed order (the device's per-operator times are read by index)."""
    proc = run_invoke("generate", f"--tflite={branching}", "--board=nucleo-l4r5zi", f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    board_dir = tmp_path / "nucleo-l4r5zi" / "held_concat"
    report = json.loads((board_dir / "report.json").read_text())
    order = report["op_order"]
    assert order["changed"] and order["host_bytes_after"] < order["host_bytes_before"]
    deployed = graph.read(board_dir / "model.tflite")
    original = graph.read(branching)
    assert [op.kind for op in deployed.ops] == [original.ops[i].kind for i in order["order"]]
    rows = json.loads((board_dir / "profile.json").read_text())["rows"]
    assert [r["op"] for r in rows] == [op.kind for op in deployed.ops]
    assert "operator order" in proc.stdout
