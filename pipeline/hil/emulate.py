"""`invoke emulate`: a virtual device on a pseudo-terminal, for rigs without hardware.

It speaks the same protocol as the firmware harness (firmware/harness/ee_core.c), answers with the real int8
outputs of the TFLM host runtime for the uploaded input, and advances its m-lap-us clock by the board's latency
ESTIMATE (pipeline.costmodel, per operator; `xprofile` answers with those per-operator estimates). It says it is emulated in its name, its profile and
its backend, and `invoke measure` labels every figure from it "emulated".
"""
from __future__ import annotations

import json
import os
import select
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import boards, codegen, costmodel, graph, tflite_model
from pipeline.errors import PipelineError
from pipeline.hil import protocol

MAX_DB_BYTES = 96 * 96 * 3


@dataclass
class EmulatedDevice:
    model_bytes: bytes
    model_name: str
    model_hash: str
    op_latency_us: list[tuple[str, float]]  # the cost model's estimate for each operator
    arena_bytes: int

    @property
    def latency_us(self) -> float:
        return sum(us for _, us in self.op_latency_us)

    def __post_init__(self):
        from tflite_micro import runtime

        self.interpreter = runtime.Interpreter.from_bytes(self.model_bytes, arena_size=max(self.arena_bytes, 1 << 16))
        inp = self.interpreter.get_input_details(0)
        out = self.interpreter.get_output_details(0)
        self.input_shape, self.input_bytes = tuple(inp["shape"]), int(np.prod(inp["shape"]))
        self.output_scale = float(out["quantization_parameters"]["scales"][0])
        self.output_zero = int(out["quantization_parameters"]["zero_points"][0])
        self.clock_us = 0.0
        self.db = bytearray()
        self.db_size = 0
        self.outputs: np.ndarray | None = None

    def banner(self) -> list[str]:
        return ["m-timestamp-mode-performance", self._lap(), "m-init-done", protocol.READY]

    def _lap(self) -> str:
        return f"m-lap-us-{int(self.clock_us) % (1 << 32)}"

    def handle(self, text: str) -> list[str]:
        words = text.split()
        try:
            lines = self._dispatch(words) if words else ["e-[Empty command]"]
        except ValueError:
            lines = ["e-[Invalid number]"]
        return lines + [protocol.READY]

    def _dispatch(self, words: list[str]) -> list[str]:
        cmd, args = words[0], words[1:]
        if cmd == "name":
            return ["m-name-dut-[mcu-deploy EMULATED]"]
        if cmd == "profile":
            return ["m-profile-[mcu-deploy EMULATED device]", f"m-model-[{self.model_name}]"]
        if cmd == "timestamp":
            return [self._lap()]
        if cmd == "xinfo":
            return ["m-x-version-2", "m-x-backend-[emulated]", f"m-x-model-[{self.model_name}]",
                    f"m-x-model-hash-[{self.model_hash}]", f"m-x-input-bytes-{self.input_bytes}",
                    f"m-x-output-count-{0 if self.outputs is None else self.outputs.size}",
                    f"m-x-arena-size-{self.arena_bytes}", "m-x-arena-used-0", f"m-x-max-db-bytes-{MAX_DB_BYTES}"]
        if cmd == "db":
            return self._db(args)
        if cmd == "infer":
            return self._infer(args)
        if cmd == "xprofile":
            if self.outputs is None:
                return ["e-[No results: run infer first]"]
            return [f"m-x-profile-[{i},{op},{round(us)}]" for i, (op, us) in enumerate(self.op_latency_us)] + [
                f"m-x-profile-count-{len(self.op_latency_us)}"]
        if cmd in ("results", "xraw"):
            if self.outputs is None:
                return ["e-[No results: run infer first]"]
            return [self._results()] if cmd == "results" else [f"m-x-raw-[{self.outputs.tobytes().hex()}]"]
        return [f"e-[Unknown command: {cmd[:40]}]"]

    def _db(self, args: list[str]) -> list[str]:
        if not args:
            return ["e-[Command 'db' requires a subcommand]"]
        if args[0] == "load":
            n = int(args[1]) if len(args) > 1 else 0
            if not 0 < n <= MAX_DB_BYTES:
                return [f"e-[Command 'db load' must be 1..{MAX_DB_BYTES} bytes]"]
            self.db, self.db_size = bytearray(), n
            return [f"m-[Expecting {n} bytes]"]
        if self.db_size == 0:
            return ["e-[Command 'db' needs 'db load N' first]"]
        try:
            chunk = bytes.fromhex(args[0])
        except ValueError:
            return ["e-[Invalid hex digits]"]
        if len(self.db) + len(chunk) > self.db_size:
            return [f"e-[db overflows the announced {self.db_size} bytes]"]
        self.db += chunk
        return ["m-load-done"] if len(self.db) == self.db_size else []

    def _infer(self, args: list[str]) -> list[str]:
        n = int(args[0]) if args else 1
        w = int(args[1]) if len(args) > 1 else 10
        if n <= 0:
            return ["e-[Inference iterations must be >0]"]
        if len(self.db) != self.db_size or self.db_size != self.input_bytes:
            return [f"e-[Input has {len(self.db)} bytes, model expects {self.input_bytes}]"]
        x = np.frombuffer(bytes(self.db), dtype=np.int8).reshape(self.input_shape)
        self.interpreter.set_input(x, 0)
        self.interpreter.invoke()  # outputs are the same each iteration: run once, charge n + w estimates
        self.outputs = np.asarray(self.interpreter.get_output(0)).reshape(-1).astype(np.int8)
        self.clock_us += w * self.latency_us
        lines = [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}", self._lap()]
        self.clock_us += n * self.latency_us
        return lines + [self._lap(), "m-infer-done", self._results()]

    def _results(self) -> str:
        values = (self.outputs.astype(np.float32) - self.output_zero) * self.output_scale
        return "m-results-[" + ",".join(f"{v:.3f}" for v in values) + "]"


def device_for_build(build_dir: Path, board: boards.Board, model: str, folder: Path | None = None) -> EmulatedDevice:
    """An emulated device for the build of `model` in build_dir/<board>/<model> (or in `folder`)."""
    folder = folder or build_dir / board.name / model
    path = folder / "model.tflite"
    if not path.is_file():
        raise PipelineError(f"no build of {model} for {board.name} in {folder}: run "
                            f"`invoke build --board={board.name} --model={model}` first")
    tflite_model.read(path)  # a corrupt model fails here with one line
    model_bytes = path.read_bytes()
    arena = json.loads((folder / "report.json").read_text())["arena_bytes"]
    estimate = costmodel.estimate(graph.read(path), board)
    return EmulatedDevice(model_bytes, model, codegen.model_hash(model_bytes),
                          [(op.op, op.us) for op in estimate.per_op], arena)


class Serving:
    """An emulated device served on a pseudo-terminal from a thread: `with Serving(device) as port: ...`."""

    def __init__(self, device: EmulatedDevice):
        import threading

        self.device = device
        self.ready: dict = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve, args=(device, lambda p: self.ready.setdefault("port", p),
                                                           self.stop.is_set), daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while "port" not in self.ready:
            time.sleep(0.01)
        return self.ready["port"]

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def serve(device: EmulatedDevice, on_ready: Callable[[str], None], stop: Callable[[], bool] = lambda: False) -> None:
    """Serve the protocol on a new pseudo-terminal until stop() is true (or forever)."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing: bytes as a UART carries them
    path = os.ttyname(slave)
    os.write(master, "".join(line + "\r\n" for line in device.banner()).encode())
    on_ready(path)
    pending = b""
    try:
        while not stop():
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                pending += os.read(master, 4096)
            except OSError:
                time.sleep(0.01)
                continue
            while b"%" in pending:
                raw, _, pending = pending.partition(b"%")
                reply = device.handle(raw.decode("ascii", errors="replace")[: protocol.MAX_COMMAND + 1])
                os.write(master, "".join(line + "\r\n" for line in reply).encode())
    finally:
        os.close(master)
        os.close(slave)
