"""STAND-IN for MLPerf Tiny's interface board (the STM32H573I-DK "tinyML Enhanced Interface Board"; none can be
plugged into CI), between the host and the DUT, on a pseudo-terminal.

It speaks the board's command interface as mlcommons/tiny benchmark/interface documents it (README, CLI/Menu.cpp,
CLI/InterfaceMenu.cpp) and the MLCommons runner drives it (io_manager.py, io_manager_enhanced.py): commands from the
host end in '%', every answer ends in "m-ready\\r\\n"; `name` answers "tinyML Enhanced Interface Board"; `dut CMD`
answers "m-dut-passthrough(CMD)" and "m-ready", sends "CMD%" to the DUT over its UART and relays each line of the
DUT's answer, up to and including the DUT's own m-ready, as "[dut]: LINE"; `setbaud N` sets the DUT link's rate
(the real board stores it in flash and resets); `checkbaud` answers "baud is: N"; anything else only "m-ready".
Audio playback and wake-word recording (the streaming benchmark) are not stood in for: `play`, `ls`,
`record_detections`, `print_detections` and `print_dutycycle` say so. Written here from those facts; nothing of
the board's firmware or the runner is copied.

The DUT link is a serial port (the host harness's pty, or a pyserial URL) paced as a UART at the DUT's rate: each
character takes 10 bit times each way (8N1), so at 9600 baud a 56-character `db` command takes 58 ms, as on the
wire. The DUT's timestamp pin does not pass through this board: it goes to the power board's D7 (LPM01A) or GPI0
(JS220), see tests/standin/lpm01a.py.

    python tests/standin/interface_board.py --dut /dev/pts/N [--dut-baud 9600]     # prints "pty: /dev/pts/M"
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tty

import serial

NAME = "tinyML Enhanced Interface Board"
NOT_STOOD_IN = ("play", "ls", "record_detections", "print_detections", "print_dutycycle")


class Uart:
    """The board's UART to the DUT: bytes take their wire time at `baud`."""

    def __init__(self, port: str, baud: int):
        self.ser = serial.serial_for_url(port, baudrate=baud, timeout=0.05)
        self.baud = baud

    def write(self, data: bytes) -> None:
        for byte in data:
            self.ser.write(bytes([byte]))
            time.sleep(10 / self.baud)

    def read_line(self, timeout: float) -> str | None:
        line, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            byte = self.ser.read(1)
            if not byte:
                continue
            time.sleep(10 / self.baud)
            if byte == b"\n":
                return line.decode(errors="replace").strip("\r\0")
            line += byte
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dut", required=True, help="the DUT's serial port (the host harness's pty)")
    parser.add_argument("--dut-baud", type=int, default=9600, help="the DUT link's rate (default 9600: energy mode)")
    parser.add_argument("--dut-timeout", type=float, default=600.0,
                        help="seconds to wait for a line of the DUT's answer (the real board waits for ever)")
    args = parser.parse_args()
    dut = Uart(args.dut, args.dut_baud)
    master, slave = os.openpty()
    tty.setraw(slave)
    print(f"pty: {os.ttyname(slave)}", flush=True)

    def send(*lines: str) -> None:
        os.write(master, "".join(line + "\r\n" for line in lines).encode())

    pending = b""
    while True:
        try:
            data = os.read(master, 256)
        except OSError:  # no host on the other end yet
            time.sleep(0.05)
            continue
        pending += data
        while b"%" in pending:
            raw, pending = pending.split(b"%", 1)
            command = raw.decode(errors="replace").strip()
            word, _, rest = command.partition(" ")
            if word == "dut":
                send(f"m-dut-passthrough({rest})", "m-ready")
                dut.write(rest.encode() + b"%")
                while True:
                    line = dut.read_line(args.dut_timeout)
                    if line is None:
                        send(f"[dut]: e-[STAND-IN interface board: no answer from the DUT in {args.dut_timeout:g} s]")
                        break
                    if line:
                        send(f"[dut]: {line}")
                    if line == "m-ready":
                        break
            elif word == "name":
                send(NAME, "m-ready")
            elif word == "setbaud":
                dut.baud = int(rest)
                dut.ser.baudrate = dut.baud
                send(f"set baud to: {rest}", "m-ready")
            elif word == "checkbaud":
                send(f"baud is: {dut.baud}", "m-ready")
            elif word in NOT_STOOD_IN:
                send(f"e-[STAND-IN interface board: '{word}' (audio, wake-word timing) is not stood in for]", "m-ready")
            else:
                send("m-ready")


if __name__ == "__main__":
    sys.exit(main())
