"""The MLPerf Tiny benchmark serial protocol as lines (mlcommons/tiny benchmark/api), plus this project's
versioned x- extensions (docs/serial-protocol.md).

Commands end with '%'. Each reply line ends with "\\r\\n"; every command is closed by "m-ready"; errors are
"e-[...]". parse_line() recognises the known line shapes anywhere in a received line, so a reply glued to a
partial or garbled line is still found.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

TERMINATOR = "%"
READY = "m-ready"
MAX_COMMAND = 80
# Bytes per `db` command: as the MLCommons runner without a power manager ("db " + 62 hex digits = 65 chars).
DB_BYTES_PER_COMMAND = 31
# Extension version 2: xprofile; 3: binary xdb frames and the xbaud switch (docs/serial-protocol.md).
PROFILE_VERSION = 2
FRAMES_VERSION = 3
FRAME_BYTES = 4096  # a frame is acknowledged once; at 921,600 baud 4 KB take 44 ms on the wire
FRAME_TIMEOUT_S = 0.5  # the core's EE_FRAME_TIMEOUT_US: a frame whose next byte is later is dropped
BAUD_CONFIRM_S = 1.0  # the core's EE_BAUD_CONFIRM_US: xbaudok must arrive at the new rate within this

_PATTERNS = [
    ("ready", r"m-ready"),
    ("init_done", r"m-init-done"),
    ("timestamp_mode", r"m-timestamp-mode-(\w+)"),
    ("lap_us", r"m-lap-us-(\d+)"),
    ("name", r"m-name-dut-\[([^\]]*)\]"),
    ("profile", r"m-profile-\[([^\]]*)\]"),
    ("model", r"m-model-\[([^\]]*)\]"),
    ("expecting", r"m-\[Expecting (\d+) bytes\]"),
    ("load_done", r"m-load-done"),
    ("warmup_start", r"m-warmup-start-(\d+)"),
    ("warmup_done", r"m-warmup-done"),
    ("infer_start", r"m-infer-start-(\d+)"),
    ("infer_done", r"m-infer-done"),
    ("results", r"m-results-\[([-0-9.,eE+ ]*)\]"),
    ("buffer", r"m-buffer-([0-9a-f-]+)"),
    ("x_raw", r"m-x-raw-\[([0-9a-f]*)\]"),
    ("x_text", r"m-x-([a-z][a-z-]*?)-\[([^\]]*)\]"),
    ("x_number", r"m-x-([a-z][a-z-]*?)-(-?\d+)"),
    ("error", r"e-\[(.*)\]"),
]
_COMPILED = [(kind, re.compile(pattern)) for kind, pattern in _PATTERNS]
_START = re.compile(r"[me]-")


@dataclass(frozen=True)
class Line:
    kind: str  # one of the pattern kinds above, or "other" for an unknown m- line
    values: tuple[str, ...]
    text: str


def parse_line(raw: str) -> Line | None:
    """The protocol line inside `raw`, or None when it holds none (noise, a partial line)."""
    text = raw.strip("\r\n\0 ")
    for start in (m.start() for m in _START.finditer(text)):
        candidate = text[start:]
        for kind, rx in _COMPILED:
            match = rx.fullmatch(candidate)
            if match:
                return Line(kind, match.groups(), candidate)
    if text.startswith("m-"):
        return Line("other", (), text)
    return None


def command(text: str) -> bytes:
    """Encode one command; refuses what the firmware would reject as too long or ambiguous."""
    if TERMINATOR in text or len(text) > MAX_COMMAND:
        raise ValueError(f"not a valid command: {text!r}")
    return (text + TERMINATOR).encode("ascii")


def db_commands(data: bytes, chunk: int = DB_BYTES_PER_COMMAND) -> list[str]:
    return [f"db load {len(data)}"] + [f"db {data[i:i + chunk].hex()}" for i in range(0, len(data), chunk)]


def frame(data: bytes) -> tuple[str, bytes]:
    """One xdb frame: the command's text (for messages) and the bytes to send, the command then the raw data."""
    text = f"xdb {len(data)} {zlib.crc32(data):08x}"
    return text, command(text) + data


def parse_results(values: str) -> list[float]:
    return [float(v) for v in values.split(",") if v.strip()]


def lap_delta_us(start: int, end: int) -> int:
    """Microseconds between two m-lap-us stamps; the firmware's counter wraps at 2^32."""
    return (end - start) % (1 << 32)
