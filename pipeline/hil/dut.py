"""A device under test over any pyserial port: commands in, parsed protocol lines out.

Like the MLCommons runner, a command waits for "m-ready" with a timeout and commands that can be repeated
(name, profile, xinfo) are retried 3 times. Unlike it, noise and partial lines are skipped rather than fatal,
and a boot banner in the middle of a command is reported as a reset.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.hil import protocol
from pipeline.hil.errors import DeviceError, DeviceReset, DeviceTimeout
from pipeline.hil.protocol import Line

REPEATABLE = {"name", "profile", "xinfo", "help", "timestamp"}


@dataclass
class InferReply:
    iterations: int
    elapsed_us: int  # between the two m-lap-us stamps around the timed loop
    results: list[float]
    extra: dict[str, str]  # x- lines reported during the run (e.g. energy)


class Device:
    def __init__(self, port, name: str, timeout: float = 5.0, retries: int = 3):
        self.port = port
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self._pending = b""
        self.noise_lines = 0  # lines that held no protocol line, for the report

    # -- reading ---------------------------------------------------------------------------------------
    def _read_line(self, deadline: float) -> str | None:
        while b"\n" not in self._pending:
            if time.monotonic() > deadline:
                return None
            chunk = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
            if chunk:
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("ascii", errors="replace")

    def drain(self, quiet: float = 0.3, limit: float = 3.0) -> list[Line]:
        """Read what the device says on its own (a boot banner after the port opened) until it is quiet."""
        seen: list[Line] = []
        end = time.monotonic() + limit
        while time.monotonic() < end:
            raw = self._read_line(min(end, time.monotonic() + quiet))
            if raw is None:
                break
            parsed = protocol.parse_line(raw)
            if parsed:
                seen.append(parsed)
        return seen

    # -- commands --------------------------------------------------------------------------------------
    def command(self, text: str, timeout: float | None = None) -> list[Line]:
        word = text.split(" ", 1)[0]
        attempts = self.retries if word in REPEATABLE else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._command_once(text, timeout or self.timeout)
            except DeviceTimeout:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _command_once(self, text: str, timeout: float) -> list[Line]:
        return self.exchange(protocol.command(text), text, timeout)

    def exchange(self, payload: bytes, text: str, timeout: float | None = None) -> list[Line]:
        """Send raw bytes (a broken host's too, for tests) and read the reply up to m-ready."""
        timeout = timeout or self.timeout
        self.port.write(payload)
        self.port.flush()
        deadline = time.monotonic() + timeout
        lines: list[Line] = []
        while True:
            raw = self._read_line(deadline)
            if raw is None:
                raise DeviceTimeout(
                    f"no answer from the device on {self.name} to '{text}' within {timeout:.1f} s: check that the "
                    "benchmark firmware is flashed and the baud rate matches the board file"
                )
            parsed = protocol.parse_line(raw)
            if parsed is None:
                self.noise_lines += 1
                continue
            if parsed.kind == "init_done":
                raise DeviceReset(f"the device on {self.name} rebooted during '{text}' (boot banner seen): check "
                                  "its power supply and reset line; results measured before this are kept")
            lines.append(parsed)
            if parsed.kind == "ready":
                break
        errors = [line.values[0] for line in lines if line.kind == "error"]
        if errors:
            raise DeviceError(f"the device on {self.name} refused '{text}': {errors[0]}")
        return lines

    # -- protocol operations ---------------------------------------------------------------------------
    def load(self, data: bytes) -> list[Line]:
        """Upload one input with `db`; returns every reply line (a firmware may say what it expects)."""
        lines: list[Line] = []
        for text in protocol.db_commands(data):
            lines += self.command(text)
        return lines

    def infer(self, iterations: int, warmup: int, timeout: float = 30.0) -> InferReply:
        lines = self.command(f"infer {iterations} {warmup}", timeout=timeout)
        laps = [int(line.values[0]) for line in lines if line.kind == "lap_us"]
        results = [line for line in lines if line.kind == "results"]
        if len(laps) < 2 or not results:
            raise DeviceError(f"the device on {self.name} answered 'infer' without two timestamps and results")
        extra = {line.values[0]: line.values[1] for line in lines if line.kind in ("x_text", "x_number")}
        return InferReply(iterations, protocol.lap_delta_us(laps[-2], laps[-1]),
                          protocol.parse_results(results[-1].values[0]), extra)

    def profile(self) -> list[tuple[str, int]]:
        """Per-operator microseconds of the last inference (the xprofile extension), in execution order."""
        lines = self.command("xprofile")
        rows = [line.values[1].split(",") for line in lines if line.kind == "x_text" and line.values[0] == "profile"]
        try:
            return [(name, int(us)) for _, name, us in rows]
        except ValueError:
            raise DeviceError(f"the device on {self.name} sent a malformed xprofile line") from None

    def raw_outputs(self) -> bytes:
        for line in self.command("xraw"):
            if line.kind == "x_raw":
                return bytes.fromhex(line.values[0])
        raise DeviceError(f"the device on {self.name} gave no raw outputs")
