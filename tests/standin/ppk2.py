"""STAND-IN for a Nordic Power Profiler Kit II (no PPK2 can be plugged into CI), on a pseudo-terminal.

It answers the PPK2's serial commands as the `ppk2-api` package (PyPI, 0.9.2) sends them: the one-byte opcodes
GET_META_DATA (0x19, answered with the calibration text ending in "END"), SET_POWER_MODE (0x11 + mode),
REGULATOR_SET (0x0d + two voltage bytes), DEVICE_RUNNING_SET (0x0c + on/off), AVERAGE_START (0x06) and AVERAGE_STOP
(0x07). Between start and stop it streams samples at the PPK2's 100 kHz: 32-bit little-endian words with the ADC
value in bits 0-13, the current range in bits 14-16 and the eight logic inputs in bits 24-31, as ppk2-api parses
them. Written here from those facts; nothing of the package is copied.

What it measures is made up from the DUT's timestamp pin: it reads the host harness's virtual pin file
(`ee_host --pin FILE`: lines "<CLOCK_MONOTONIC ns> <level>") and, for each sample's moment on the same clock, puts
the pin's level on logic input D0 and draws ACTIVE current while it is high, IDLE current otherwise. The calibration
it reports makes ppk2-api's conversion plain: current = ADC x 4 x 1.8 / 163840 / R[range].

    python tests/standin/ppk2.py --pin PIN_FILE [--active-ma 20] [--idle-ma 2]     # prints "pty: /dev/pts/N"
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import time
import tty

import numpy as np

RATE_HZ = 100_000
RANGE = 2                      # one range for every sample: ppk2-api's spike filter only acts on range changes
RESISTORS = {"0": 1031.64, "1": 101.65, "2": 10.15, "3": 0.94, "4": 0.043}
ADC_VOLTS_PER_LSB = 1.8 / 163840 * 4  # ppk2-api: adc_mult x the ADC field x 4
LAG_S = 0.005                  # samples are made this long after their moment, so the pin file is up to date
COMMAND_LENGTH = {0x0D: 3, 0x0C: 2, 0x11: 2, 0x08: 2}  # opcode -> bytes with its arguments; the rest are 1 byte


def metadata() -> bytes:
    lines = ["Calibrated: 0"]
    for key, default in (("R", None), ("GS", 0), ("GI", 1), ("O", 0), ("S", 0), ("I", 0), ("UG", 1)):
        for i in range(5):
            lines.append(f"{key}{i}: {RESISTORS[str(i)] if default is None else default}")
    lines += ["HW: 9173", "IA: 56", "END"]
    return ("\n".join(lines) + "\n").encode()


def adc_code(current_a: float) -> int:
    code = round(current_a * RESISTORS[str(RANGE)] / ADC_VOLTS_PER_LSB)
    if not 0 <= code < 1 << 14:
        raise SystemExit(f"error: {current_a * 1000:g} mA is outside the stand-in's range {RANGE}")
    return code


class PinFile:
    """The virtual pin's edges, read as the harness appends them."""

    def __init__(self, path: str):
        self.path, self.offset, self.partial = path, 0, b""
        self.times: list[int] = []
        self.levels: list[int] = []

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        for line in lines:
            stamp, level = line.split()
            self.times.append(int(stamp))
            self.levels.append(int(level))

    def levels_at(self, times_ns: np.ndarray) -> np.ndarray:
        if not self.times:
            return np.zeros(len(times_ns), dtype=np.uint32)
        idx = np.searchsorted(np.asarray(self.times, dtype=np.int64), times_ns, side="right") - 1
        levels = np.asarray(self.levels, dtype=np.uint32)
        return np.where(idx >= 0, levels[np.clip(idx, 0, None)], 0).astype(np.uint32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", required=True, help="the host harness's virtual timestamp pin file")
    parser.add_argument("--active-ma", type=float, default=20.0, help="current while D0 is high (mA)")
    parser.add_argument("--idle-ma", type=float, default=2.0, help="current while D0 is low (mA)")
    args = parser.parse_args()
    active, idle = adc_code(args.active_ma / 1000), adc_code(args.idle_ma / 1000)
    pin = PinFile(args.pin)

    master, slave = os.openpty()
    tty.setraw(slave)
    print(f"pty: {os.ttyname(slave)}", flush=True)
    pending = b""
    streaming = False
    next_sample_ns = 0
    while True:
        ready, _, _ = select.select([master], [], [], 0.002)
        if ready:
            try:
                pending += os.read(master, 256)
            except OSError:
                time.sleep(0.01)
        while pending:
            opcode = pending[0]
            size = COMMAND_LENGTH.get(opcode, 1)
            if len(pending) < size:
                break
            pending = pending[size:]
            if opcode == 0x19:
                os.write(master, metadata())
            elif opcode == 0x06:
                streaming = True
                next_sample_ns = time.monotonic_ns() - int(LAG_S * 1e9)
            elif opcode == 0x07:
                streaming = False
        if streaming:
            until = time.monotonic_ns() - int(LAG_S * 1e9)
            count = (until - next_sample_ns) * RATE_HZ // 1_000_000_000
            if count > 0:
                pin.refresh()
                times = next_sample_ns + np.arange(count, dtype=np.int64) * (1_000_000_000 // RATE_HZ)
                next_sample_ns += count * (1_000_000_000 // RATE_HZ)
                d0 = pin.levels_at(times)
                words = np.where(d0 == 1, active, idle).astype(np.uint32) | (RANGE << 14) | (d0 << 24)
                os.write(master, words.astype("<u4").tobytes())


if __name__ == "__main__":
    sys.exit(main())
