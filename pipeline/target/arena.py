"""The tensor arena a model needs: TFLM's RecordingMicroAllocator on the host, carried over to the board's 32-bit
core by pipeline.target.mcu_arena.

print_allocations() writes from C++ straight to file descriptor 2, so Python's sys.stderr never sees it:
the descriptor itself is redirected to a temporary file for the call.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.target import mcu_arena

# The margin kept on top of the computed need where the rule is not checked on the device (ESP-NN: no ESP32 run);
# pipeline.target.kernels gives it per kernel family.
ARENA_MARGIN_BYTES = 1024
ARENA_ALIGNMENT = 16


# The rule is TFLM 90b983c's (the bare QEMU port's library). A framework that links another TFLM keeps a margin
# measured the same way where it was measured:
# - zephyr: Zephyr 4.1's tflite-micro module (8d404de, upstream ef645912, built without TF_LITE_STATIC_MEMORY) used
#   more than TFLM 90b983c on every model, in the project's Zephyr app for mps2/an386 under QEMU (boot line's
#   arena_used): digits 7 ops +160, str_ww 11 +192, AD 10 +176, KWS 13 +224, IC 16 +256, VWW 31 +432 bytes. A line
#   through them: ~81 + 11.3 bytes an operator; 96 + 12 an operator covers all six with 20-36 bytes to spare
#   (boards/facts/arena/cortex-m4f-cmsis-nn-zephyr.json, checked by tests/test_mcu_arena.py);
# - arduino: the Arduino library's TFLM was not measured: 1 KiB, as for ESP-NN.
FRAMEWORK_MARGIN_PER_OP = {"zephyr": 12}
FRAMEWORK_MARGIN_FIXED = {"zephyr": 96, "arduino": 1024}


def framework_margin(framework: str, ops: int) -> int:
    """Bytes kept for the TFLM a board's framework links (see FRAMEWORK_MARGIN_PER_OP), a multiple of 16."""
    return mcu_arena.align(FRAMEWORK_MARGIN_PER_OP.get(framework, 0) * ops + FRAMEWORK_MARGIN_FIXED.get(framework, 0))


@dataclass
class ArenaResult:
    measured_bytes: int  # the host's need (64-bit, reference kernels): its runs use this arena
    head_bytes: int  # non-persistent (activations, scratch), as TFLM recorded it on the host
    tail_bytes: int  # persistent (tensor structs, kernel data)
    arena_bytes: int  # what the firmware allocates (the board's need + margin, a multiple of 16)
    margin_bytes: int
    # The largest scratch buffer the board's optimized kernels request (pipeline.target.kernels): informative, the
    # planner places every request beside the tensors alive at its op.
    kernel_scratch_bytes: int = 0
    kernel_scratch_op: str | None = None  # "#1 CONV_2D"
    kernels: str = "reference"
    # The board's figures from the rule (pipeline.target.mcu_arena): the need, what arena_used_bytes() will report,
    # and the peak while TFLM plans the head; 0 for the host's own result.
    device_need_bytes: int = 0
    device_used_bytes: int = 0
    device_planning_bytes: int = 0
    recording: dict = field(default_factory=dict)  # the host recording by kind: [used, requested, count]
    host_recorded_bytes: int = 0  # the host's RecordingMicroAllocator total (tail + head after AllocateTensors)


def for_board(host: ArenaResult, layout: mcu_arena.ModelLayout, scratch_per_op: list[int], kernels: str,
              scratch_bytes: int = 0, scratch_op: str | None = None, margin: int = 0) -> ArenaResult:
    """The arena for a board: TFLM's need on its 32-bit core (its allocations replayed with the core's struct sizes,
    the head planned with the kernels' scratch requests beside the tensors), plus the kernel family's margin, a
    multiple of 16."""
    device = mcu_arena.rule(None, layout, scratch_per_op, bits=32, kernels=kernels)
    arena = mcu_arena.align(device.need_bytes + margin)
    return ArenaResult(host.measured_bytes, host.head_bytes, host.tail_bytes, arena, arena - device.need_bytes,
                       scratch_bytes, scratch_op, kernels, device.need_bytes, device.used_bytes,
                       device.planning_bytes, host.recording, host.host_recorded_bytes)


def capture_fd2(fn) -> str:
    """Run fn() with file descriptor 2 redirected to a temporary file and return what was written there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return sink.read().decode(errors="replace")


def arena_size_for(need: int, margin: int = ARENA_MARGIN_BYTES) -> int:
    """need + up to `margin`, a multiple of the arena alignment: rounded down within the margin (so never above
    the cap), up where there is no margin to round into."""
    aligned_up = -(-need // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return max(aligned_up, (need + margin) // ARENA_ALIGNMENT * ARENA_ALIGNMENT)


def record(model_bytes: bytes) -> mcu_arena.Recording:
    """TFLM's RecordingMicroAllocator on the host, by kind."""
    from tflite_micro import runtime

    def allocate_and_print():
        # Generous arena for the measurement; the recording allocator reports what was really used.
        interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=MEASURE_ARENA_BYTES)
        interpreter.print_allocations()

    try:
        log = capture_fd2(allocate_and_print)
    except RuntimeError as exc:
        raise PipelineError(f"TFLM could not allocate the model on the host: {exc}") from None
    recording = mcu_arena.parse_recording(log)
    if recording is None:
        raise PipelineError("TFLM printed no allocation totals for the model (tflite-micro's output format changed?)")
    return recording


def model_layout(model_bytes: bytes) -> mcu_arena.ModelLayout:
    from pipeline.target import graph

    with tempfile.TemporaryDirectory() as tmp:  # layout() reads the file for an embedded offline plan
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model_bytes)
        return mcu_arena.layout(graph.read(path))


def measure(model_bytes: bytes) -> ArenaResult:
    """The host's need: the recording's total is what is left after AllocateTensors, but TFLM peaks earlier on a
    model with many small tensors (while planning: pipeline.target.mcu_arena), so the need is the same rule with the
    host's 64-bit struct sizes, checked by running the model in exactly that arena; only if that fails (a model the
    rule does not describe) is the smallest arena searched for."""
    rec = record(model_bytes)
    layout = model_layout(model_bytes)
    need = mcu_arena.rule(rec, layout, [0] * len(layout.ops), bits=64).need_bytes
    with Prober(model_bytes) as prober:
        if not prober.runs_in(need):
            need = smallest_arena(prober, need)
    arena = arena_size_for(need)
    return ArenaResult(need, rec.head, rec.tail, arena, arena - need, recording=rec.kinds,
                       host_recorded_bytes=rec.total)


MEASURE_ARENA_BYTES = 1 << 22


def host_run_bytes(model_bytes: bytes, arena_bytes: int | None = None) -> int:
    """The arena to run a model in on the host TFLM runtime: a build's measured arena (`arena_bytes`, from generate
    or a report), or measured here. Never tflite_micro's default, 10x the model's bytes, which a small model with a
    large activation (4 KB of weights, a 128x128x16 tensor) does not fit in."""
    return arena_bytes if arena_bytes else measure(model_bytes).arena_bytes


# One child process answers every probe of a search: it reads arena sizes on stdin and answers 1 (TFLM allocated
# and invoked the model in exactly that arena) or 0 per line. A child, because a failed Prepare can leave TFLM's
# allocator aborting the whole process instead of raising; one child for all probes, because starting Python and
# tflite_micro per probe cost ~1 s each (17 s for the anomaly-detection model's search). A child that dies on a
# probe answers "no" for it and is replaced for the next one. It says "A" once TFLM has allocated the model: a child
# that dies after that (a kernel's TFLITE_CHECK on the all-zero input, pipeline.target.tflm_aborts) still answers
# "the arena is enough".
_WORKER = """
import sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    interpreter = None
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(line))
        print("A", flush=True)  # allocated: if invoke then kills the child, the arena was still enough
        details = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
        interpreter.invoke()
        print(1, flush=True)
    except Exception:
        print(0, flush=True)
    interpreter = None  # answered first: a crash while tearing down costs the next probe a retry, not a wrong answer
"""


class Prober:
    """Does TFLM allocate and invoke the model in exactly N bytes? Asked of one child process (see _WORKER)."""

    def __init__(self, model_bytes: bytes):
        self.model_bytes = model_bytes
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")
        self._file.write(model_bytes)
        self._file.flush()
        self._proc = None
        self.probes = 0
        self.starts = 0  # child processes started: 1 unless one died (TFLM can abort after a failed Prepare)
        self.invoke_died = False  # TFLM allocated the model but died invoking it on an all-zero input
        self.killed_by: int | None = None  # the signal the last child that died without answering died of

    def _start(self):
        import subprocess

        self.starts += 1
        self._proc = subprocess.Popen([sys.executable, "-c", _WORKER, self._file.name], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def _ask(self, arena_bytes: int) -> str:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        try:
            self._proc.stdin.write(f"{arena_bytes}\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
            if answer == "A":
                answer = self._proc.stdout.readline().strip() or "A"
        except (BrokenPipeError, OSError):
            answer = ""
        if answer not in ("0", "1"):  # the child died: the next question goes to a new one
            code = self._proc.wait()
            self.killed_by = -code if code < 0 else None
            self._proc = None
        return answer

    def runs_in(self, arena_bytes: int) -> bool:
        """A child that dies without answering (it may have been dying from the probe before) is asked again in a
        fresh child; a probe that kills a fresh child too is a no."""
        self.probes += 1
        answer = self._ask(arena_bytes)
        if answer not in ("0", "1", "A"):
            answer = self._ask(arena_bytes)
        if answer == "A":  # allocated, then the kernel aborted on the all-zero input (pipeline.target.tflm_aborts)
            self.invoke_died = True
        return answer in ("1", "A")

    def close(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def runs_in(model_bytes: bytes, arena_bytes: int) -> bool:
    """Does TFLM allocate and invoke the model in exactly arena_bytes? Probed in a child process."""
    with Prober(model_bytes) as prober:
        return prober.runs_in(arena_bytes)


def smallest_arena(prober: Prober, low: int) -> int:
    """Bisect the smallest arena TFLM runs the model in, to 16 bytes, above the recorded total `low` (every probe
    asked of the one child process of `prober`)."""
    high = MEASURE_ARENA_BYTES
    if not prober.runs_in(high):
        if prober.killed_by is not None:
            import signal

            from pipeline.target import tflm_aborts

            raise PipelineError(f"TFLM's host runtime died ({signal.Signals(prober.killed_by).name}) running the model "
                                f"on an all-zero input: {tflm_aborts.explain(prober.model_bytes)}")
        raise PipelineError(f"TFLM cannot run the model even in a {high}-byte arena on the host")
    while high - low > ARENA_ALIGNMENT:
        mid = (low + high) // 2
        if prober.runs_in(mid):
            high = mid
        else:
            low = mid
    return high
