"""The arena search for a model the rule's host figure does not run: every probe in one child process."""
from pathlib import Path

from pipeline.target import arena

# A Keras Dense 16 -> 8 (ReLU) -> 16 model with random weights, converted to full int8 here (post-training, 50 random
# calibration inputs). Its RecordingMicroAllocator total (1,408 bytes, after AllocateTensors) does not run it: TFLM
# peaks earlier, and on the pip runtime in FULLY_CONNECTED's Prepare (1,680), above the planning-peak rule
# (pipeline.target.mcu_arena: 1,648), so measure() searches.
FC_MODEL = Path(__file__).parent / "data" / "fc16_int8.tflite"


def test_the_search_finds_the_smallest_arena_in_one_child_process():
    model = FC_MODEL.read_bytes()
    result = arena.measure(model)
    assert result.measured_bytes > result.head_bytes + result.tail_bytes  # the recorded total was not enough
    with arena.Prober(model) as prober:
        assert prober.runs_in(result.measured_bytes) and not prober.runs_in(result.measured_bytes - 16)
        need = arena.smallest_arena(prober, result.head_bytes + result.tail_bytes)
        assert need == arena.smallest_arena(prober, 1648 - 16)  # from below the rule's figure: the same
        assert need == result.measured_bytes
        # ~18 probes; a child is replaced only where TFLM aborted it (after some failed allocations), not per probe
        assert prober.probes > 15 and prober.starts <= prober.probes // 2, (prober.probes, prober.starts)


def test_a_child_that_dies_is_a_no_and_is_replaced():
    model = FC_MODEL.read_bytes()
    with arena.Prober(model) as prober:
        assert prober.runs_in(1 << 16)
        prober._proc.kill()  # as when TFLM's allocator aborts the process on a failed Prepare
        prober._proc.wait()
        assert prober.runs_in(1 << 16) and prober.starts == 2
