"""The tensor arena a model needs, measured by TFLM's RecordingMicroAllocator on the host.

print_allocations() writes from C++ straight to file descriptor 2, so Python's sys.stderr never sees it:
the descriptor itself is redirected to a temporary file for the call.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass

from pipeline.errors import PipelineError

# The margin added to the host's measurement plus the kernels' scratch, at most 1 KiB where it is unverified
# (pipeline.target.kernels: per kernel family). The host build is 64-bit with reference kernels: a 32-bit MCU needs less
# for TFLM's structs. The firmware prints its real arena_used_bytes() so the size can be checked on the device.
ARENA_MARGIN_BYTES = 1024
ARENA_ALIGNMENT = 16

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")


@dataclass
class ArenaResult:
    measured_bytes: int  # TFLM's total on the host
    head_bytes: int  # non-persistent (activations, scratch)
    tail_bytes: int  # persistent (tensor structs, kernel data)
    arena_bytes: int  # what the firmware allocates: measured + kernel scratch + margin, a multiple of 16
    margin_bytes: int
    # The largest scratch buffer the board's optimized kernels request beyond the host's reference kernels
    # (pipeline.target.kernels); a scratch buffer lives only while its op runs, so the largest one is what is added.
    kernel_scratch_bytes: int = 0
    kernel_scratch_op: str | None = None  # "#1 CONV_2D"
    kernels: str = "reference"


def with_kernel_scratch(host: ArenaResult, scratch_bytes: int, scratch_op: str | None, kernels: str,
                        margin: int = ARENA_MARGIN_BYTES) -> ArenaResult:
    """The arena for a board: what the host measured, plus the board kernels' largest scratch request, plus the
    kernel family's margin."""
    arena = arena_size_for(host.measured_bytes + scratch_bytes, margin)
    return ArenaResult(host.measured_bytes, host.head_bytes, host.tail_bytes, arena,
                       arena - host.measured_bytes - scratch_bytes, scratch_bytes, scratch_op, kernels)


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


def measure(model_bytes: bytes) -> ArenaResult:
    from tflite_micro import runtime

    def allocate_and_print():
        # Generous arena for the measurement; the recording allocator reports what was really used.
        interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=MEASURE_ARENA_BYTES)
        interpreter.print_allocations()

    try:
        log = capture_fd2(allocate_and_print)
    except RuntimeError as exc:
        raise PipelineError(f"TFLM could not allocate the model on the host: {exc}") from None
    found = [rx.search(log) for rx in (_TOTAL, _HEAD, _TAIL)]
    if not all(found):
        raise PipelineError("TFLM printed no allocation totals for the model (tflite-micro's output format changed?)")
    total, head, tail = (int(m.group(1)) for m in found)
    # The recorded total is not always enough: some kernels (seen with FULLY_CONNECTED) take a different path
    # in a tight arena. So the real minimum is searched for when total + margin does not run the model.
    with Prober(model_bytes) as prober:
        need = total if prober.runs_in(arena_size_for(total, 0)) else smallest_arena(prober, total)
    arena = arena_size_for(need)
    return ArenaResult(need, head, tail, arena, arena - need)


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
# probe answers "no" for it and is replaced for the next one.
_WORKER = """
import sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    interpreter = None
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(line))
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
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")
        self._file.write(model_bytes)
        self._file.flush()
        self._proc = None
        self.probes = 0
        self.starts = 0  # child processes started: 1 unless one died (TFLM can abort after a failed Prepare)

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
        except (BrokenPipeError, OSError):
            answer = ""
        if answer not in ("0", "1"):  # the child died: the next question goes to a new one
            self._proc.wait()
            self._proc = None
        return answer

    def runs_in(self, arena_bytes: int) -> bool:
        """A child that dies without answering (it may have been dying from the probe before) is asked again in a
        fresh child; a probe that kills a fresh child too is a no."""
        self.probes += 1
        answer = self._ask(arena_bytes)
        if answer not in ("0", "1"):
            answer = self._ask(arena_bytes)
        return answer == "1"

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
        raise PipelineError(f"TFLM cannot run the model even in a {high}-byte arena on the host")
    while high - low > ARENA_ALIGNMENT:
        mid = (low + high) // 2
        if prober.runs_in(mid):
            high = mid
        else:
            low = mid
    return high
