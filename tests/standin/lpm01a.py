"""STAND-IN for an ST X-NUCLEO-LPM01A power board ("PowerShield"; none can be plugged into CI), on a pseudo-terminal.

It speaks the PowerShield's text protocol as the MLCommons runner (mlcommons/tiny benchmark/runner,
power_manager/power_manager_lpm.py) drives it and as `invoke measure --energy=lpm01a:PORT` does: commands end in
"\\r\\n" and each is acknowledged "ack <command>" (an unknown or unsupported one "error <command>" and an
"Error detail: ..." line); `htc`/`hrc`, `lcd`, `pwr on|off`, `volt <V>m`, `acqtime`, `trigdelay`, `trigsrc sw`,
`eventsrc d7 fal`, `output energy|current`, `format ascii_dec`, `freq <Hz>`, `start`, `stop` (acknowledged, then
"Acquisition completed"), `powershield`, `version`, `status`. During an acquisition it streams one sample a line in
the PowerShield's ascii_dec form "dddd-ee" (6409-07 = 6409 x 10^-7: joules over the sample period with `output
energy`, amperes with `output current`), a line "TimeStamp: 001s 000ms, buff 00%" after every second of samples,
and, at each falling edge on D7 (`eventsrc d7 fal`), a line "event NN ris" placed after the samples completed before
the edge. The wording of the TimeStamp and event lines is the one the runner parses (script.py, power_manager_lpm.py);
ST's manual (UM2269) was not reachable to confirm it. Written here from those facts; nothing of the runner is copied.

What it measures is made up from the DUT's timestamp pin, wired to D7: it reads the host harness's virtual pin file
(`ee_host --pin FILE`: lines "<CLOCK_MONOTONIC ns> <level>") and the DUT draws ACTIVE current while the pin is high,
IDLE current while it is low, at the voltage `volt` set. Each sample is the exact integral over its period. So with
performance-mode firmware (the pin high for the timed loop) the energy of the loop is ACTIVE x V x its length, and
with energy-mode firmware (the pin idles high, >= 100 us low pulses) the DUT draws ACTIVE current all the time.

    python tests/standin/lpm01a.py --pin PIN_FILE [--active-ma 20] [--idle-ma 2]     # prints "pty: /dev/pts/N"
"""
from __future__ import annotations

import argparse
import fcntl
import math
import os
import select
import struct
import sys
import termios
import time
import tty

import numpy as np

from ppk2 import PinFile  # the same reader of the virtual pin as the stand-in PPK2

LAG_S = 0.005      # samples are made this long after their period ends, so the pin file is up to date
FREQS = {"100k": 100_000, "50k": 50_000, "20k": 20_000, "10k": 10_000, "5k": 5000, "2k": 2000, "1k": 1000,
         "500": 500, "200": 200, "100": 100, "50": 50, "20": 20, "10": 10, "5": 5, "2": 2, "1": 1}


def ascii_dec(value: float) -> str:
    """The PowerShield's ascii_dec number: four digits of mantissa and a signed two-digit power of ten."""
    if value <= 0:
        return "0000+00"
    exponent = math.floor(math.log10(value)) - 3
    mantissa = round(value / 10.0 ** exponent)
    if mantissa >= 10000:
        mantissa, exponent = round(mantissa / 10), exponent + 1
    return f"{mantissa:04d}{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def high_ns(pin: PinFile, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How long the pin was high within each [start, end) (ns), from its edges."""
    if not pin.times:
        return np.zeros(len(starts), dtype=np.int64)
    times = np.asarray(pin.times, dtype=np.int64)
    levels = np.asarray(pin.levels, dtype=np.int64)
    cumulative = np.concatenate([[0], np.cumsum(levels[:-1] * np.diff(times))])  # high time up to each edge

    def integral(t):
        idx = np.searchsorted(times, t, side="right") - 1
        before = idx < 0
        idx = np.clip(idx, 0, None)
        return np.where(before, 0, cumulative[idx] + levels[idx] * (t - times[idx]))

    return integral(ends) - integral(starts)


class PowerShield:
    def __init__(self, pin: PinFile, active_a: float, idle_a: float, write, log=None, unread=lambda: 0):
        self.pin, self.active_a, self.idle_a, self.write = pin, active_a, idle_a, write
        self.log, self.unread = log, unread
        self.volts, self.freq, self.output = 3.3, 100, "current"
        self.acquiring, self.powered = False, False
        self.t0 = self.count = self.events = self.next_edge = 0

    def reply(self, *lines: str) -> None:
        self.write("".join(line + "\r\n" for line in lines).encode())

    def refuse(self, command: str, detail: str) -> None:
        self.reply(f"error {command}", f"Error detail: {detail}")

    def command(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        name, args = words[0], words[1:]
        if name == "volt":
            if args == ["get"]:
                return self.reply(f"ack {line}", f"{self.volts * 1000:.0f}m")
            if not args or not args[0].endswith("m") or not args[0][:-1].isdigit():
                return self.refuse(line, "volt takes millivolts, e.g. 3300m")
            volts = int(args[0][:-1]) / 1000
            if not 1.8 <= volts <= 3.3:
                return self.refuse(line, "voltage out of range [1800m; 3300m]")
            self.volts = volts
        elif name == "freq":
            if not args or args[0] not in FREQS:
                return self.refuse(line, "unknown sampling frequency")
            self.freq = FREQS[args[0]]
            if self.freq > 10_000:
                return self.refuse(line, "the stand-in streams ascii_dec only, which is limited to 10k")
        elif name == "output":
            if args not in (["energy"], ["current"]):
                return self.refuse(line, "output is energy or current")
            self.output = args[0]
        elif name == "format":
            if args != ["ascii_dec"]:
                return self.refuse(line, "the stand-in streams ascii_dec only")
        elif name == "trigsrc":
            if args != ["sw"]:
                return self.refuse(line, "the stand-in triggers by software only (trigsrc sw)")
        elif name == "eventsrc":
            if args != ["d7", "fal"]:
                return self.refuse(line, "the stand-in records falling edges on D7 only (eventsrc d7 fal)")
        elif name == "pwr":
            if not args or args[0] not in ("on", "off", "auto", "get"):
                return self.refuse(line, "pwr takes on, off, auto or get")
            if args[0] == "get":
                return self.reply(f"ack {line}", "on" if self.powered else "off")
            self.powered = args[0] != "off"
        elif name == "start":
            self.pin.refresh()
            self.t0 = time.monotonic_ns()
            self.count = 0
            self.next_edge = len(self.pin.times)  # edges before the acquisition are not events
            self.acquiring = True
        elif name == "stop":
            self.acquiring = False
            return self.reply(f"ack {line}", "PowerShield > Acquisition completed")
        elif name == "powershield":
            return self.reply(f"ack {line}", "PowerShield present (STAND-IN)")
        elif name == "version":
            return self.reply(f"ack {line}", "stand-in")
        elif name == "status":
            return self.reply(f"ack {line}", "ok")
        elif name not in ("htc", "hrc", "lcd", "acqtime", "trigdelay", "pwrend", "acqmode", "funcmode"):
            return self.refuse(line, "unknown command (STAND-IN PowerShield)")
        self.reply(f"ack {line}")

    def stream(self) -> None:
        if not self.acquiring:
            return
        period = 1_000_000_000 // self.freq
        done = (time.monotonic_ns() - int(LAG_S * 1e9) - self.t0) // period
        if done <= self.count:
            return
        self.pin.refresh()
        index = np.arange(self.count, done, dtype=np.int64)
        starts = self.t0 + index * period
        high = high_ns(self.pin, starts, starts + period)
        amps = (self.active_a * high + self.idle_a * (period - high)) / period
        values = amps * self.volts * period / 1e9 if self.output == "energy" else amps
        # the falling edges within these periods: each is placed after the samples completed before it
        times, levels, end = self.pin.times, self.pin.levels, self.t0 + done * period
        fall_at = []
        while self.next_edge < len(times) and times[self.next_edge] < end:
            i = self.next_edge
            if levels[i] == 0 and i > 0 and levels[i - 1] == 1 and times[i] >= self.t0:
                fall_at.append((times[i] - self.t0) // period)
            self.next_edge += 1
        out, f = [], 0
        for k, value in zip(index, values):
            while f < len(fall_at) and fall_at[f] <= k:
                if self.log:  # how far behind the host's reading is when the event is written
                    self.log.write(f"event {self.events} sample {k} written {time.monotonic_ns()} "
                                   f"sample_start_ns {self.t0 + fall_at[f] * period} "
                                   f"unread_bytes {self.unread()}\n")
                    self.log.flush()
                out.append(f"event {self.events:02d} ris")
                self.events, f = self.events + 1, f + 1
            out.append(ascii_dec(float(value)))
            if (k + 1) % self.freq == 0:
                out.append(f"TimeStamp: {(k + 1) // self.freq:03d}s 000ms, buff 00%")
        self.count = done
        self.reply(*out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", required=True, help="the host harness's virtual timestamp pin file (wired to D7)")
    parser.add_argument("--active-ma", type=float, default=20.0, help="current while the pin is high (mA)")
    parser.add_argument("--idle-ma", type=float, default=2.0, help="current while the pin is low (mA)")
    parser.add_argument("--log", help="append a line per D7 event: when it was written and how many bytes the host "
                                      "had not read yet (diagnoses a host that falls behind the 1 kHz stream)")
    args = parser.parse_args()
    master, slave = os.openpty()
    tty.setraw(slave)
    print(f"pty: {os.ttyname(slave)}", flush=True)
    def unread() -> int:  # bytes written to the host and not read by it yet
        return struct.unpack("i", fcntl.ioctl(slave, termios.FIONREAD, b"\0" * 4))[0]

    board = PowerShield(PinFile(args.pin), args.active_ma / 1000, args.idle_ma / 1000,
                        lambda data: os.write(master, data), open(args.log, "a") if args.log else None, unread)
    pending = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.002)
        if ready:
            try:
                pending += os.read(master, 256)
            except OSError:  # no client on the other end yet
                time.sleep(0.01)
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            board.command(line.decode(errors="replace").strip())
        board.stream()


if __name__ == "__main__":
    sys.exit(main())
