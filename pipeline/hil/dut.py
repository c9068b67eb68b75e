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
        self.baud_failure = ""  # why the last switch_baud() failed

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
    def load(self, data: bytes, frames: bool = False) -> list[Line]:
        """Upload one input: binary xdb frames where the firmware has them (extension v3), else `db` hex commands
        as the MLCommons runner sends them. Returns every reply line (a firmware may say what it expects)."""
        if frames:
            return self.load_frames(data)
        lines: list[Line] = []
        for text in protocol.db_commands(data):
            lines += self.command(text)
        return lines

    def load_frames(self, data: bytes, frame_bytes: int = protocol.FRAME_BYTES, attempts: int = 3) -> list[Line]:
        """`db load N`, then the input in CRC-checked binary frames, each acknowledged with the device's db position.
        A frame the device dropped (checksum, or bytes lost so that it timed out) is sent again."""
        lines = self.command(f"db load {len(data)}")
        pos = 0
        while pos < len(data):
            chunk = data[pos:pos + frame_bytes]
            text, payload = protocol.frame(chunk)
            for attempt in range(1, attempts + 1):
                try:
                    # the device replies once the frame's last byte is in: allow for it on a slow wire
                    reply = self.exchange(payload, text, self.timeout + len(payload) * 10 / max(self.baud, 1200))
                except (DeviceError, DeviceTimeout) as exc:
                    if attempt == attempts:
                        raise DeviceError(f"the device on {self.name} dropped an xdb frame at byte {pos} "
                                          f"{attempts} times: {exc}") from None
                    self.resync()
                    # The reply may be what was lost (a slow host), not the frame: ask where db is before resending
                    if self.db_position() == pos + len(chunk):
                        break
                    continue
                acks = [int(line.values[1]) for line in reply if line.kind == "x_number" and line.values[0] == "db-ok"]
                if acks != [pos + len(chunk)]:
                    raise DeviceError(f"the device on {self.name} acknowledged an xdb frame with db at {acks}, "
                                      f"expected {pos + len(chunk)}")
                lines += reply
                break
            pos += len(chunk)
        return lines

    def db_position(self) -> int | None:
        """Where the device's next db byte goes (xinfo's db-pos), or None from firmware that does not say."""
        for line in self.command("xinfo"):
            if line.kind == "x_number" and line.values[0] == "db-pos":
                return int(line.values[1])
        return None

    def resync(self, wait: float = protocol.FRAME_TIMEOUT_S + 0.1) -> None:
        """After a lost frame or reply: wait out the device's time-out, end whatever partial command is left (an
        empty command), and read until the device is quiet."""
        time.sleep(max(0.0, wait))
        self.port.write(protocol.TERMINATOR.encode())
        self.port.flush()
        self._pending = b""
        self.drain(quiet=0.3, limit=2.0)

    @property
    def baud(self) -> int:
        return int(getattr(self.port, "baudrate", 0) or 0)

    def switch_baud(self, rate: int) -> bool:
        """Move the link to `rate` with the xbaud extension: the device answers at the old rate, both sides switch,
        and the host confirms at the new one. If that fails both go back (the device on its own after
        BAUD_CONFIRM_S), and False is returned: the run goes on at the old rate."""
        old = self.baud
        self.command(f"xbaud {rate}")
        switched_at = time.monotonic()
        self.port.flush()
        self.port.baudrate = rate
        time.sleep(0.02)
        self.baud_failure = "no confirmation at the new rate (the USB-UART bridge or the cable may not carry it)"
        try:
            reply = self.command("xbaudok", timeout=0.5)
            confirmed = [int(line.values[1]) for line in reply
                         if line.kind == "x_number" and line.values[0] == "baud-ok"]
            if confirmed == [rate]:
                return True
            if confirmed:  # it answered, so the link carries the rate: the device's UART driver refused it
                self.baud_failure = f"the device's UART driver refused {rate} baud and stayed at {confirmed[0]}"
        except (DeviceError, DeviceTimeout):
            pass
        self.port.baudrate = old
        self.resync(wait=protocol.BAUD_CONFIRM_S + 0.2 - (time.monotonic() - switched_at))
        return False

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

    def audio_features(self, pcm: bytes, stride_bytes: int, max_db_bytes: int, frames: bool = False,
                       timeout: float = 60.0) -> tuple[list[list[int]], int]:
        """Stream 16-bit PCM through the device's audio front end (extension: xaudio, xfeatures) from a fresh
        state, in db-sized pieces of whole strides; returns the features it computed (one list a frame, now also
        the model's input on the device) and the front end's microseconds on the device's clock."""
        self.command("xaudio reset")
        piece = max(stride_bytes, max_db_bytes // stride_bytes * stride_bytes)
        busy_us = 0
        for start in range(0, len(pcm), piece):
            self.load(pcm[start:start + piece], frames=frames)
            for line in self.command("xaudio", timeout=timeout):
                if line.kind == "x_number" and line.values[0] == "audio-us":
                    busy_us += int(line.values[1])
        rows = [line.values[1].split(",") for line in self.command("xfeatures", timeout=timeout)
                if line.kind == "x_text" and line.values[0] == "features"]
        try:
            ordered = sorted((int(i), text) for i, text in rows)
            return [[int(text[j:j + 4], 16) for j in range(0, len(text), 4)] for _, text in ordered], busy_us
        except ValueError:
            raise DeviceError(f"the device on {self.name} sent a malformed xfeatures line") from None

    def raw_outputs(self) -> bytes:
        for line in self.command("xraw"):
            if line.kind == "x_raw":
                return bytes.fromhex(line.values[0])
        raise DeviceError(f"the device on {self.name} gave no raw outputs")
