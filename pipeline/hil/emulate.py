"""`invoke emulate`: a virtual device on a pseudo-terminal, for rigs without hardware.

It runs the firmware's own harness core (firmware/harness/ee_core.c, built on the user's computer as a host shared library and
driven through ctypes), so the emulator, the host port and the firmware share one parser and one set of replies.
Its backend answers with the real int8 outputs of the TFLM host runtime for the uploaded input and advances the
port's clock by the board's latency ESTIMATE (pipeline.target.costmodel, per operator; `xprofile` answers with those
per-operator estimates). It says it is emulated in its name, its profile and its backend, and `invoke measure`
labels every figure from it "emulated".
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import select
import shutil
import subprocess
import time
import tty
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import boards
from pipeline.firmware import codegen
from pipeline.target import costmodel, graph, tflite_model
from pipeline.errors import PipelineError

FIRMWARE = Path(__file__).resolve().parent.parent.parent / "firmware"
CORE_SOURCES = (FIRMWARE / "harness" / "ee_core.c", FIRMWARE / "ports" / "python" / "ee_python.c")
CORE_DEFINES = ('-DEE_VENDOR="mcu-deploy EMULATED"', '-DEE_FW_NAME="mcu-deploy EMULATED device"')

WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)
MICROS = ctypes.CFUNCTYPE(ctypes.c_uint32)
LOAD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
INFER = ctypes.CFUNCTYPE(ctypes.c_int)
OUTPUTS = ctypes.CFUNCTYPE(ctypes.c_void_p)
SIZE = ctypes.CFUNCTYPE(ctypes.c_size_t)
PROFILE = ctypes.CFUNCTYPE(None, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_uint32))
SET_BAUD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32)
PIN = ctypes.CFUNCTYPE(None, ctypes.c_int)
FE_RESET = ctypes.CFUNCTYPE(None)
FE_PROCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int16), ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_uint16))


class Port(ctypes.Structure):  # ee_port_t
    _fields_ = [("write", WRITE), ("micros", MICROS), ("platform", ctypes.c_char_p), ("set_baud", SET_BAUD),
                ("baud", ctypes.c_uint32), ("pin", PIN), ("energy_mode", ctypes.c_int)]


class Backend(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_char_p), ("model_name", ctypes.c_char_p), ("model_hash", ctypes.c_char_p),
                ("input_bytes", ctypes.c_size_t), ("output_count", ctypes.c_size_t), ("output_scale", ctypes.c_float),
                ("output_zero_point", ctypes.c_int), ("arena_size", ctypes.c_uint32), ("load", LOAD),
                ("infer", INFER), ("outputs", OUTPUTS), ("arena_used", SIZE), ("profile_count", SIZE),
                ("profile", PROFILE), ("model_id", ctypes.c_char_p), ("fe_reset", FE_RESET), ("fe_process", FE_PROCESS),
                ("fe_stride_samples", ctypes.c_uint32), ("fe_mel_channels", ctypes.c_uint32),
                ("fe_frame_step", ctypes.c_uint32), ("fe_channel_group", ctypes.c_uint32), ("fe_frames", ctypes.c_uint32),
                ("fe_feature_scale", ctypes.c_float), ("input_scale", ctypes.c_float), ("input_zero_point", ctypes.c_int)]


def core_library(cache_dir: Path) -> ctypes.CDLL:
    """The harness core as a shared library, compiled once per version of its sources into cache_dir."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in CORE_SOURCES) + " ".join(CORE_DEFINES).encode())
    library = Path(cache_dir) / f"libee_core-{digest.hexdigest()[:12]}.so"
    if not library.is_file():
        if shutil.which("gcc") is None:
            raise PipelineError("gcc is not installed: the emulator builds the firmware's harness core for the host "
                                "(Debian: apt-get install gcc)")
        library.parent.mkdir(parents=True, exist_ok=True)
        tmp = library.with_name(f"{library.name}.{os.getpid()}.tmp")
        proc = subprocess.run(["gcc", "-std=c99", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                               *CORE_DEFINES, f"-I{FIRMWARE / 'harness'}", *map(str, CORE_SOURCES), "-o", str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"building the harness core for the emulator failed: {proc.stderr.strip()[:300]}")
        tmp.replace(library)
    core = ctypes.CDLL(str(library))
    core.ee_ctx_size.restype = ctypes.c_size_t
    core.ee_init.argtypes = [ctypes.c_void_p, ctypes.POINTER(Port), ctypes.POINTER(Backend)]
    core.ee_feed_bytes.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return core


class EmulatedDevice:
    """The harness core with an emulated backend: feed() takes received bytes and returns what the device sends."""

    def __init__(self, model_bytes: bytes, model_name: str, model_hash: str, op_latency_us: list[tuple[str, float]],
                 arena_bytes: int, cache_dir: Path, model_id: str | None = None, realtime: bool = False,
                 frontend: dict | None = None, frontend_us_per_frame: float = 0.0, host_arena_bytes: int = 0):
        from tflite_micro import runtime

        self.model_name, self.model_hash, self.op_latency_us = model_name, model_hash, op_latency_us
        self.interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=max(arena_bytes, host_arena_bytes, 1 << 16))  # the host is 64-bit: its need is larger
        inp = self.interpreter.get_input_details(0)
        out = self.interpreter.get_output_details(0)
        self.input_shape, self.input_bytes = tuple(inp["shape"]), int(np.prod(inp["shape"]))
        self.outputs = (ctypes.c_int8 * int(np.prod(out["shape"])))()
        self.input = np.zeros(self.input_shape, dtype=np.int8)
        self.clock_us = 0.0
        # Real-time mode: an inference returns when its modelled latency has passed on the host's clock too, so a
        # client with wall-clock rules (MLPerf Tiny's runner wants timed windows of >= 10 s) sees the modelled time.
        self.realtime = realtime
        self.wall_deadline = 0.0
        self.sent = bytearray()
        self.op_names = [ctypes.c_char_p(op.encode()) for op, _ in op_latency_us]
        # Every callback object is kept on self: ctypes would free them under the C core's feet otherwise.
        # A pseudo-terminal has no baud rate: no set_baud, so xbaud is refused and xdb frames go at full speed.
        self.port = Port(WRITE(self._write), MICROS(lambda: int(self.clock_us) % (1 << 32)), b"host", SET_BAUD(), 0)
        self.callbacks = (LOAD(self._load), INFER(self._infer), OUTPUTS(lambda: ctypes.addressof(self.outputs)),
                          SIZE(lambda: 0), SIZE(lambda: len(op_latency_us)), PROFILE(self._profile))
        # The audio front end: the same TFLM microfrontend C code training used (pipeline.target.frontend), one stride per
        # call; the clock advances by the front end's per-frame ESTIMATE (the profile's AUDIO_FRONTEND row).
        self.frontend, self.frontend_us_per_frame, self.fe_state = frontend, frontend_us_per_frame, None
        fe = (FE_RESET(self._fe_reset), FE_PROCESS(self._fe_process)) if frontend else (FE_RESET(), FE_PROCESS())
        self.fe_callbacks = fe
        f = frontend or {}
        in_q = inp["quantization_parameters"]
        self.backend = Backend(b"emulated", model_name.encode(), model_hash.encode(), self.input_bytes,
                               len(self.outputs), float(out["quantization_parameters"]["scales"][0]),
                               int(out["quantization_parameters"]["zero_points"][0]), arena_bytes, *self.callbacks,
                               (model_id or model_name).encode(),
                               *fe, f.get("sample_rate", 0) * f.get("stride_ms", 0) // 1000, f.get("mel_channels", 0),
                               f.get("frame_step", 0), f.get("channel_group", 0), f.get("frames", 0),
                               f.get("feature_scale", 0.0), float(in_q["scales"][0]) if len(in_q["scales"]) else 0.0,
                               int(in_q["zero_points"][0]) if len(in_q["zero_points"]) else 0)
        self.core = core_library(cache_dir)
        self.ctx = ctypes.create_string_buffer(self.core.ee_ctx_size())
        self.core.ee_init(self.ctx, ctypes.byref(self.port), ctypes.byref(self.backend))

    @property
    def latency_us(self) -> float:
        return sum(us for _, us in self.op_latency_us)

    def _write(self, text, length) -> None:
        self.sent += ctypes.string_at(text, length)

    def _load(self, data, length) -> int:
        if length != self.input_bytes:
            return 1
        self.input = np.frombuffer(ctypes.string_at(data, length), dtype=np.int8).reshape(self.input_shape).copy()
        return 0

    def _infer(self) -> int:
        self.interpreter.set_input(self.input, 0)
        self.interpreter.invoke()
        result = np.asarray(self.interpreter.get_output(0)).reshape(-1).astype(np.int8)
        ctypes.memmove(self.outputs, result.tobytes(), len(self.outputs))
        self.clock_us += self.latency_us
        if self.realtime:
            now = time.perf_counter()
            self.wall_deadline = max(self.wall_deadline, now) + self.latency_us / 1e6
            while time.perf_counter() < self.wall_deadline:
                time.sleep(min(0.05, max(0.0, self.wall_deadline - time.perf_counter())))
        return 0

    def _fe_reset(self) -> None:
        from pipeline.target import frontend

        if self.fe_state is None:
            self.fe_state = frontend.Stream(frontend.FrontEndSettings.from_dict(self.frontend))
        else:
            self.fe_state.reset()

    def _fe_process(self, samples, n, frame) -> int:
        if self.fe_state is None:
            self._fe_reset()
        values = self.fe_state.process(np.frombuffer(ctypes.string_at(samples, 2 * n), dtype=np.int16))
        if values is None:
            return 0
        ctypes.memmove(frame, values.tobytes(), 2 * len(values))
        self.clock_us += self.frontend_us_per_frame
        return 1

    def _profile(self, i, op, us) -> None:
        op[0] = self.op_names[i].value if i < len(self.op_names) else b""
        us[0] = int(round(self.op_latency_us[i][1])) if i < len(self.op_latency_us) else 0

    def take(self) -> bytes:
        """What the device sent since the last call (the boot banner first)."""
        sent, self.sent = bytes(self.sent), bytearray()
        return sent

    def feed(self, data: bytes) -> bytes:
        self.core.ee_feed_bytes(self.ctx, data, len(data))
        return self.take()


def device_for_build(build_dir: Path, board: boards.Board, model: str, folder: Path | None = None,
                     realtime: bool = False) -> EmulatedDevice:
    """An emulated device for the build of `model` in build_dir/<board>/<model> (or in `folder`)."""
    folder = folder or build_dir / board.name / model
    path = folder / "model.tflite"
    if not path.is_file():
        raise PipelineError(f"no build of {model} for {board.name} in {folder}: run "
                            f"`invoke build --board={board.name} --model={model}` first")
    tflite_model.read(path)  # a corrupt model fails here with one line
    model_bytes = path.read_bytes()
    report = json.loads((folder / "report.json").read_text())
    estimate = costmodel.estimate(graph.read(path), board)
    frontend = report.get("audio_frontend")
    per_frame = (report.get("frontend_estimate") or {}).get("est_us_per_frame", 0.0)
    return EmulatedDevice(model_bytes, model, codegen.model_hash(model_bytes),
                          [(op.op, op.us) for op in estimate.per_op], report["arena_bytes"],
                          Path(build_dir) / "_harness", report.get("model_id") or codegen.model_id(model),
                          realtime, frontend, per_frame, report.get("arena_host_bytes") or 0)


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
    os.write(master, device.take())  # the boot banner
    on_ready(path)
    try:
        while not stop():
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                received = os.read(master, 4096)
            except OSError:
                time.sleep(0.01)
                continue
            reply = device.feed(received)
            if reply:
                os.write(master, reply)
    finally:
        os.close(master)
        os.close(slave)
