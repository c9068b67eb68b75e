"""`invoke bench-serial`: reader overhead and input upload throughput, `db` hex commands vs xdb frames.

Two links, both running the firmware's own harness core:
- the host port on a pseudo-terminal, where no wire limits the rate: what is timed is the reader's and the
  harness's own cost per command or frame. The figure at a real baud rate adds the time the characters take on
  the wire, 10 bits a character (8N1), both ways: what a board behind a USB-UART bridge would see, less the
  bridge's USB latency;
- the Cortex-M4 image under qemu-system-arm (test backend), its UART on a TCP socket: measured end to end, wall
  clock. QEMU's UART model has no baud rate: it moves characters as fast as the emulation polls them.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.hil import protocol, transport
from pipeline.hil.dut import Device
from pipeline.hil.harness_build import HostDevice, QemuDevice, build_host, build_qemu, free_tcp_port

MAX_CHUNK = (protocol.MAX_COMMAND - len("db ")) // 2  # 38 bytes: the most one 80-character command can carry
PAYLOAD = 96 * 96 * 3  # the largest MLPerf Tiny input (VWW)
TARGET_EFFICIENCY = 0.85
TARGET_SECONDS = 0.5


def wire_chars_hex(payload: int, chunk: int) -> int:
    """Characters both ways for one upload with `db`: each command and its m-ready, plus db load's reply."""
    commands = -(-payload // chunk)
    sent = commands * (len("db ") + 1) + 2 * payload + len(f"db load {payload}%")
    received = (commands + 1) * len("m-ready\r\n") + len(f"m-[Expecting {payload} bytes]\r\n") + len("m-load-done\r\n")
    return sent + received


def wire_chars_frames(payload: int, frame: int) -> int:
    """Characters both ways for one upload in xdb frames: each frame's command, data and acknowledgement."""
    sent = len(f"db load {payload}%")
    received = len(f"m-[Expecting {payload} bytes]\r\n") + len("m-ready\r\n") + len("m-load-done\r\n")
    for start in range(0, payload, frame):
        size = min(frame, payload - start)
        sent += len(f"xdb {size} 00000000%") + size
        received += len(f"m-x-db-ok-{start + size}\r\n") + len("m-ready\r\n")
    return sent + received


def _time_uploads(device: Device, data: bytes, frames: bool, chunk: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if frames:
            device.load_frames(data, chunk)
        else:
            for text in protocol.db_commands(data, chunk):
                device.command(text)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run_benchmark(baud: int = 921600, payload: int = PAYLOAD, repeats: int = 5, qemu: bool = True) -> dict:
    lines = ["m-lap-us-123456789", "m-results-[0.000,0.004,0.992,0.000,0.000,0.000,0.000,0.004,0.000,0.000]",
             "\x00\xff#noise", "m-lapm-ready"] * 2500
    start = time.perf_counter()
    for line in lines:
        protocol.parse_line(line)
    figures: dict = {"parse_us_per_line": round((time.perf_counter() - start) / len(lines) * 1e6, 2),
                     "payload_bytes": payload, "baud": baud}
    print(f"reader: {figures['parse_us_per_line']} us to parse a line (mean over {len(lines)} lines)")
    line_rate = baud / 10  # bytes/s on an 8N1 wire
    data = bytes(i % 251 for i in range(payload))
    ways = [("db hex, 31 B a command (MLCommons runner)", False, protocol.DB_BYTES_PER_COMMAND),
            (f"db hex, {MAX_CHUNK} B a command", False, MAX_CHUNK),
            (f"xdb frames of {protocol.FRAME_BYTES} B", True, protocol.FRAME_BYTES)]
    with tempfile.TemporaryDirectory() as tmp:
        binary = build_host(Path(tmp) / "ee_host", sanitize=False)
        with HostDevice(binary, "--input-bytes", str(payload), "--outputs", "10") as host:
            port = transport.open_port(host.port, 115200)
            device = Device(port, host.port)
            device.drain()
            t0 = time.perf_counter()
            switched = device.switch_baud(baud)
            figures["pty_baud_switch_s"] = round(time.perf_counter() - t0, 4)
            print(f"xbaud {baud} on the pty: {'confirmed' if switched else 'FAILED'} in {figures['pty_baud_switch_s']} s")
            for label, frames, chunk in ways:
                overhead = _time_uploads(device, data, frames, chunk, repeats)
                chars = wire_chars_frames(payload, chunk) if frames else wire_chars_hex(payload, chunk)
                seconds = chars * 10 / baud + overhead
                key = "pty_frames" if frames else f"pty_hex_{chunk}"
                figures[key] = {"host_overhead_s": round(overhead, 4), "wire_chars": chars,
                                f"seconds_at_{baud}": round(seconds, 3),
                                "line_rate_efficiency": round(payload / seconds / line_rate, 3)}
                print(f"pty, {label}: {overhead * 1e3:.1f} ms reader+harness time (median of {repeats}); at {baud} baud "
                      f"{chars} characters on the wire -> {seconds:.3f} s for {payload} bytes, "
                      f"{figures[key]['line_rate_efficiency']:.1%} of the line rate")
            port.close()
        if qemu and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
            image = build_qemu(Path(tmp) / "ee.elf", payload, 10, "bench", "0" * 16, work=1)
            with QemuDevice(image, free_tcp_port()) as vm:
                port = transport.open_port(vm.url, 115200)
                device = Device(port, vm.url, timeout=60.0)
                device.drain(quiet=1.0)
                switched = device.switch_baud(baud)
                for label, frames, chunk in (ways[0], ways[2]):
                    seconds = _time_uploads(device, data, frames, chunk, 1)
                    key = "qemu_frames" if frames else "qemu_hex"
                    figures[key] = {"seconds": round(seconds, 3), "payload_bytes_per_s": round(payload / seconds)}
                    print(f"QEMU mps2-an386 UART (xbaud {'confirmed' if switched else 'failed'}), {label}: "
                          f"{seconds:.2f} s for {payload} bytes, {payload / seconds:.0f} payload bytes/s (wall clock)")
                port.close()
            figures["qemu_frames_speedup"] = round(figures["qemu_hex"]["seconds"] / figures["qemu_frames"]["seconds"], 2)
            print(f"QEMU: frames upload {figures['qemu_frames_speedup']}x faster than db hex")
    best = figures["pty_frames"]
    verdict = (best["line_rate_efficiency"] >= TARGET_EFFICIENCY and best[f"seconds_at_{baud}"] <= TARGET_SECONDS)
    figures["meets_targets"] = verdict
    print(f"targets (>= {TARGET_EFFICIENCY:.0%} of the line rate, a {payload}-byte input in <= {TARGET_SECONDS} s at "
          f"{baud} baud): {'met' if verdict else 'NOT met'} by xdb frames: {best['line_rate_efficiency']:.1%}, "
          f"{best[f'seconds_at_{baud}']:.3f} s (pty figure plus wire time; a USB-UART bridge adds its USB latency "
          "once per frame)")
    return figures
