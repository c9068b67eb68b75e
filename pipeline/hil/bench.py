"""`invoke bench-serial`: reader overhead and `db` upload throughput.

Measured on the host harness over a pseudo-terminal, where no wire limits the rate, so what is timed is the
reader's and the harness's own cost per command. Throughput at a real baud rate adds the time the characters
take on the wire: 10 bits a character (8N1) for the command and for its reply.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from pipeline.hil import protocol, transport
from pipeline.hil.dut import Device
from pipeline.hil.harness_build import HostDevice, build_host

MAX_CHUNK = (protocol.MAX_COMMAND - len("db ")) // 2  # 38 bytes: the most one 80-character command can carry


def wire_seconds_per_command(chunk: int, baud: int) -> float:
    sent = len("db ") + 2 * chunk + 1  # the hex digits and the '%'
    received = len("m-ready\r\n")
    return (sent + received) * 10 / baud


def run_benchmark(baud: int = 115200, payload: int = 27648, repeats: int = 5) -> dict:
    lines = ["m-lap-us-123456789", "m-results-[0.000,0.004,0.992,0.000,0.000,0.000,0.000,0.004,0.000,0.000]",
             "\x00\xff#noise", "m-lapm-ready"] * 2500
    start = time.perf_counter()
    for line in lines:
        protocol.parse_line(line)
    parse_us = (time.perf_counter() - start) / len(lines) * 1e6

    figures = {"parse_us_per_line": round(parse_us, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        binary = build_host(Path(tmp) / "ee_host", sanitize=False)
        with HostDevice(binary, "--input-bytes", str(payload), "--outputs", "10") as host:
            port = transport.open_port(host.port, baud)
            device = Device(port, host.port)
            device.drain()
            for chunk in (protocol.DB_BYTES_PER_COMMAND, MAX_CHUNK):
                samples = []
                for _ in range(repeats):
                    data = bytes(i % 251 for i in range(payload))
                    commands = protocol.db_commands(data, chunk)
                    t0 = time.perf_counter()
                    for text in commands:
                        device.command(text)
                    samples.append((time.perf_counter() - t0) / (len(commands) - 1))
                overhead = statistics.median(samples)
                wire = wire_seconds_per_command(chunk, baud)
                figures[f"chunk_{chunk}"] = {
                    "host_overhead_us_per_command": round(overhead * 1e6, 1),
                    "pty_bytes_per_s": round(chunk / overhead),
                    f"bytes_per_s_at_{baud}": round(chunk / (wire + overhead)),
                    "wire_efficiency": round(chunk / ((wire + overhead) * baud / 10), 3),
                }
            port.close()
    base = figures[f"chunk_{protocol.DB_BYTES_PER_COMMAND}"][f"bytes_per_s_at_{baud}"]
    best = figures[f"chunk_{MAX_CHUNK}"][f"bytes_per_s_at_{baud}"]
    figures["gain_of_38_over_31_bytes"] = round(best / base, 3)
    figures["upload_seconds_96x96x3_at_31"] = round(payload / base, 2)
    print(f"reader: {figures['parse_us_per_line']} us to parse a line (mean over {len(lines)} lines)")
    for chunk in (protocol.DB_BYTES_PER_COMMAND, MAX_CHUNK):
        f = figures[f"chunk_{chunk}"]
        print(f"db with {chunk} bytes a command: {f['host_overhead_us_per_command']} us host+harness overhead per "
              f"command (pty, median of {repeats} uploads of {payload} bytes); at {baud} baud "
              f"{f[f'bytes_per_s_at_{baud}']} bytes/s ({f['wire_efficiency']:.1%} of the line rate)")
    print(f"38 instead of the MLCommons runner's 31 bytes a command: x{figures['gain_of_38_over_31_bytes']} "
          f"throughput; a 96x96x3 input takes {figures['upload_seconds_96x96x3_at_31']} s at 31 bytes a command")
    return figures
