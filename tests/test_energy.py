"""Energy measured: the timestamp pin of the host and QEMU ports, MLPerf Tiny's energy mode, the PPK2 path end to end
(a STAND-IN PPK2, tests/standin/ppk2.py, named as such: no PPK2 can be plugged into CI), the model id rule, the
clock starting at 0, the emulator's real-time mode and the battery life at a duty cycle."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import assert_clean_error, harness_args, run_invoke
from pipeline.firmware import codegen
from pipeline.hil import transport
from pipeline.hil.dut import Device
from pipeline.hil.harness_build import HostDevice, QemuDevice, build_qemu, free_tcp_port

STANDIN_PPK2 = os.path.join(os.path.dirname(__file__), "standin", "ppk2.py")
STANDIN_LPM01A = os.path.join(os.path.dirname(__file__), "standin", "lpm01a.py")
STANDIN_INTERFACE = os.path.join(os.path.dirname(__file__), "standin", "interface_board.py")
ACTIVE_MA, IDLE_MA, SUPPLY_V = 20.0, 2.0, 3.3


def _edges(pin_file):
    return [(int(t), int(level)) for t, level in (line.split() for line in pin_file.read_text().splitlines())]


def _windows_s(edges):
    """(rise, fall) durations in seconds, in order."""
    out, rise = [], None
    for t, level in edges:
        if level == 1 and rise is None:
            rise = t
        elif level == 0 and rise is not None:
            out.append((t - rise) / 1e9)
            rise = None
    return out


def test_ppk2_standin_and_host_port_end_to_end(host_harness, esp32_build, tmp_path):
    """`invoke measure --energy=ppk2:PORT` against the host harness whose virtual timestamp pin shapes the stand-in
    PPK2's current: the energy reported is the active current x supply x the pin's high time, within 1 %, and the
    idle current outside the window is not counted."""
    pytest.importorskip("ppk2_api")
    pin = tmp_path / "pin.txt"
    iterations = 200
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10), "--work", "2000",
                    "--pin", str(pin)) as dut:
        ppk2 = subprocess.Popen([sys.executable, STANDIN_PPK2, "--pin", str(pin), "--active-ma", str(ACTIVE_MA),
                                 "--idle-ma", str(IDLE_MA)], stdout=subprocess.PIPE, text=True)
        try:
            ppk2_port = ppk2.stdout.readline().split()[1]
            proc = run_invoke("measure", "--board=esp32", f"--port={dut.port}", f"--energy=ppk2:{ppk2_port}",
                              f"--build-dir={esp32_build['build_dir']}", "--runs=3", f"--iterations={iterations}",
                              "--inputs=0", "--warmup=0", f"--out={tmp_path / 'out'}", f"--db={tmp_path / 'h.sqlite'}",
                              "--rate=1", "--battery-mah=220")
        finally:
            ppk2.terminate()
            ppk2.wait(timeout=5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    windows = _windows_s(_edges(pin))
    assert len(windows) == 3 and min(windows) > 0.005, windows  # one window a timed run, long against 10 us samples
    expected = sorted(ACTIVE_MA * SUPPLY_V * w * 1000 / iterations for w in windows)  # mW x s = mJ; x1000 uJ
    per_run = sorted(r["energy_uj"] for r in result["runs"])
    for got, want in zip(per_run, expected):
        assert got == pytest.approx(want, rel=0.01), (per_run, expected)
    assert result["energy_uj"] == pytest.approx(expected[1], rel=0.01)
    assert result["energy_source"] == "measured: PPK2"
    assert "energy per inference (measured: PPK2)" in proc.stdout
    # the duty cycle: 1 inference a second on 220 mAh, the board file's sleep power between
    from pipeline import boards

    sleep_mw = boards.load_board("esp32").sleep_power_mw
    battery = result["battery"]
    assert battery["average_mw"] == pytest.approx(result["energy_uj"] / 1000 + sleep_mw * (1 - battery["active_fraction"]))
    assert battery["hours"] == pytest.approx(220 * 3.7 / battery["average_mw"])
    assert "battery life at 1 inferences/s" in proc.stdout and f"sleep {sleep_mw:g} mW" in proc.stdout


def test_lpm01a_standin_and_host_port_end_to_end(host_harness, esp32_build, tmp_path):
    """`invoke measure --energy=lpm01a:PORT` against the host harness whose virtual timestamp pin (on the stand-in
    LPM01A's D7) shapes its energy samples: the energy reported is the active current x 3.3 V x the pin's high time,
    within 1 % (the board samples every 1 ms), labelled as a power board's."""
    pin = tmp_path / "pin.txt"
    iterations = 1000  # windows of ~0.4 s on an idle 2-core machine (100 gave 0.04 s): long against the 1 ms samples
    common = [f"--build-dir={esp32_build['build_dir']}", "--inputs=0", "--warmup=0", f"--out={tmp_path / 'out'}",
              f"--db={tmp_path / 'h.sqlite'}"]
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10), "--work", "2000",
                    "--pin", str(pin)) as dut:
        lpm = subprocess.Popen([sys.executable, STANDIN_LPM01A, "--pin", str(pin), "--active-ma", str(ACTIVE_MA),
                                "--idle-ma", str(IDLE_MA)], stdout=subprocess.PIPE, text=True)
        try:
            lpm_port = lpm.stdout.readline().split()[1]
            proc = run_invoke("measure", "--board=esp32", f"--port={dut.port}", f"--energy=lpm01a:{lpm_port}",
                              "--runs=3", f"--iterations={iterations}", *common)
        finally:
            lpm.terminate()
            lpm.wait(timeout=5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    windows = _windows_s(_edges(pin))
    assert len(windows) == 3 and min(windows) > 0.1, windows  # long against the 1 ms samples
    expected = sorted(ACTIVE_MA * SUPPLY_V * w * 1000 / iterations for w in windows)
    per_run = sorted(r["energy_uj"] for r in result["runs"])
    for got, want in zip(per_run, expected):
        assert got == pytest.approx(want, rel=0.01), (per_run, expected)
    assert result["energy_source"] == "measured: power board (LPM01A)"
    assert "energy per inference (measured: power board (LPM01A))" in proc.stdout


def test_lpm01a_without_an_event_on_d7_is_refused_naming_the_wiring(tmp_path):
    """The meter against the stand-in LPM01A watching a pin nobody drives: one timed run's samples come, no event on
    D7, and the reader says to wire the timestamp pin to D7 (the meter alone: no device, no invoke)."""
    from pipeline.errors import PipelineError
    from pipeline.hil.dut import InferReply
    from pipeline.hil.energy import Lpm01aEnergy

    lpm = subprocess.Popen([sys.executable, STANDIN_LPM01A, "--pin", str(tmp_path / "unwired.txt")],
                           stdout=subprocess.PIPE, text=True)
    try:
        meter = Lpm01aEnergy(lpm.stdout.readline().split()[1])
        meter.WINDOW_WAIT_S = 0.3
        try:
            meter.start()
            time.sleep(0.2)
            with pytest.raises(PipelineError, match="no timestamp event on D7.*timestamp_pin"):
                meter.per_inference_uj(InferReply(iterations=1, elapsed_us=100_000, results=[], extra={}))
            assert len(meter.samples) > 100  # the samples came (1 kHz), only the event did not
        finally:
            meter.close()
    finally:
        lpm.terminate()
        lpm.wait(timeout=5)


def test_interface_board_standin_relays_the_energy_mode_dut(host_harness, tmp_path):
    """The stand-in interface board between a host and the host port in energy mode, spoken to as the MLCommons
    runner's IOManager does: its own name, then `dut CMD` relayed at 9600 baud with each DUT line prefixed."""
    with HostDevice(host_harness, *harness_args({"model": "kws01", "model_hash": "0" * 16}), "--energy-mode",
                    "--pin", str(tmp_path / "pin.txt")) as dut:
        board = subprocess.Popen([sys.executable, STANDIN_INTERFACE, "--dut", dut.port, "--dut-baud", "9600"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            port = transport.open_port(board.stdout.readline().split()[1], 115200)

            def ask(command: bytes, readies: int) -> bytes:
                port.write(command)
                data, deadline = b"", time.monotonic() + 10
                while data.count(b"m-ready") < readies and time.monotonic() < deadline:
                    data += port.read(max(1, port.in_waiting))
                return data

            assert ask(b"name%", 1) == b"tinyML Enhanced Interface Board\r\nm-ready\r\n"
            start = time.monotonic()
            data = ask(b"dut profile%", 2)
            elapsed = time.monotonic() - start
            port.close()
        finally:
            board.terminate()
            board.wait(timeout=5)
    lines = data.decode().split("\r\n")
    assert lines[:2] == ["m-dut-passthrough(profile)", "m-ready"], lines
    assert "[dut]: m-model-[kws01]" in lines and lines[-2] == "[dut]: m-ready", lines
    relayed = sum(len(l) - len("[dut]: ") + 2 for l in lines if l.startswith("[dut]: ")) + len("profile%")
    assert elapsed >= relayed * 10 / 9600 * 0.9  # the UART's wire time at 9600 baud (8N1), both ways


def test_energy_spec_refusals():
    from pipeline import boards
    from pipeline.errors import PipelineError
    from pipeline.hil.energy import meter_for

    board = boards.load_board("esp32")
    with pytest.raises(PipelineError, match="--energy=lpm01a:/dev/ttyACM1"):
        meter_for("lpm01a", board)
    with pytest.raises(PipelineError, match="JS220 .* joulescope"):
        meter_for("js220", board)
    with pytest.raises(PipelineError, match="does not exist"):
        meter_for("lpm01a:/dev/no-such-port", board)
    master, slave = os.openpty()  # a port where nothing answers: not a power board
    try:
        with pytest.raises(PipelineError, match="did not acknowledge 'htc'.*LPM01A"):
            meter_for(f"lpm01a:{os.ttyname(slave)}", board)
    finally:
        os.close(master)
        os.close(slave)


def test_ppk2_without_a_window_on_d0_is_refused_naming_the_wiring(host_harness, esp32_build, tmp_path):
    """The stand-in PPK2 watching a pin nobody drives (D0 not wired to the DUT's pin): the reader says to wire it;
    firmware with no pin at all (the emulator) is refused before anything runs."""
    pytest.importorskip("ppk2_api")
    from pipeline import boards
    from pipeline.hil.emulate import Serving, device_for_build

    ppk2 = subprocess.Popen([sys.executable, STANDIN_PPK2, "--pin", str(tmp_path / "unwired.txt")],
                            stdout=subprocess.PIPE, text=True)
    try:
        ppk2_port = ppk2.stdout.readline().split()[1]
        common = [f"--energy=ppk2:{ppk2_port}", f"--build-dir={esp32_build['build_dir']}", "--runs=1", "--inputs=0",
                  f"--out={tmp_path / 'out'}", f"--db={tmp_path / 'h.sqlite'}"]
        with HostDevice(host_harness, *harness_args(esp32_build["report"]), "--pin", str(tmp_path / "pin.txt")) as dut:
            proc = run_invoke("measure", "--board=esp32", f"--port={dut.port}", *common)
        assert_clean_error(proc, "no timestamp window on D0", "timestamp_pin")
        device = device_for_build(esp32_build["build_dir"], boards.load_board("esp32"), "digits")
        with Serving(device) as port:
            proc = run_invoke("measure", "--board=esp32", f"--port={port}", *common)
        assert_clean_error(proc, "drives no timestamp pin", "[energy]")
    finally:
        ppk2.terminate()
        ppk2.wait(timeout=5)


def _banner(port, timeout=10.0):
    """What the device wrote up to its first m-ready (the boot banner)."""
    data, deadline = b"", time.monotonic() + timeout
    while b"m-ready" not in data and time.monotonic() < deadline:
        data += port.read(max(1, port.in_waiting))
    return data.decode(errors="replace")


def test_host_clock_starts_at_zero_and_energy_mode_pulses_the_pin(host_harness, esp32_build, tmp_path):
    """m-lap-us counts from boot (the host port's used to start at the machine's uptime); in energy mode the banner
    says so, the link is at 9600 baud, and each timestamp is a low pulse of at least 100 us with nothing printed.
    (--reset-after 2 reboots the harness on the second command, so its banner is written while the test listens.)"""
    spawned = time.monotonic()
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dut:
        port = transport.open_port(dut.port, 115200)
        device = Device(port, dut.port, timeout=5.0)
        device.drain()
        lap = [int(l.values[0]) for l in device.command("timestamp") if l.kind == "lap_us"][0]
        since_spawn_us = (time.monotonic() - spawned) * 1e6
        port.close()
    assert 0 <= lap <= since_spawn_us, (lap, since_spawn_us)

    pin = tmp_path / "pin.txt"
    with HostDevice(host_harness, *harness_args(esp32_build["report"]), "--energy-mode", "--pin", str(pin),
                    "--reset-after", "2") as dut:
        port = transport.open_port(dut.port, 9600)
        device = Device(port, dut.port, timeout=5.0)
        device.drain()
        info = {l.values[0].replace("-", "_"): l.values[1] for l in device.command("xinfo")
                if l.kind in ("x_text", "x_number")}
        port.write(b"name%")  # the second command: a reboot, banner again
        banner = _banner(port)
        lines = [l.text for l in device.command("timestamp")]
        port.close()
    assert "m-timestamp-mode-energy" in banner and "m-lap-us" not in banner, banner
    assert info["mode"] == "energy" and info["baud"] == "9600" and info["timestamp_pin"] == "1"
    assert not any("m-lap-us" in line for line in lines)
    levels = [level for _, level in _edges(pin)]
    # idle high at each boot, a low pulse for each banner's timestamp and for the command's
    assert levels == [1, 0, 1] * 2 + [0, 1], levels
    edges = _edges(pin)
    lows = [edges[i + 1][0] - edges[i][0] for i in range(len(edges) - 1) if edges[i][1] == 0]
    assert len(lows) == 3 and min(lows) >= 100_000, lows  # >= 100 us each (EE_PULSE_US)


def test_measure_refuses_energy_mode_firmware_naming_the_runner(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"]), "--energy-mode") as dut:
        proc = run_invoke("measure", "--board=esp32", f"--port={dut.port}", f"--build-dir={esp32_build['build_dir']}",
                          "--runs=1", "--inputs=0", f"--out={tmp_path / 'out'}", f"--db={tmp_path / 'h.sqlite'}")
    assert_clean_error(proc, "energy-mode firmware", "MLCommons runner", "--energy-mode")


QEMU = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                          reason="needs qemu-system-arm and gcc-arm-none-eabi (.ci/run installs them)")


def _dataout_writes(log):
    """The levels the image wrote to the CMSDK GPIO 0's DATAOUT (offset 0x4), from QEMU's -d unimp log."""
    return [int(m.group(1), 16) & 1 for m in
            re.finditer(r"gpio\S*: unimplemented device write \(size 4, offset 0x004, value 0x([0-9a-f]+)\)",
                        log.read_text())]


@QEMU
@pytest.mark.parametrize("cpu", ["cortex-m4+fp", "cortex-m33+nodsp"])
def test_qemu_image_drives_the_timestamp_pin_and_counts_from_zero(esp32_build, tmp_path, cpu):
    """The Cortex-M image writes the CMSDK GPIO's DATAOUT high for the timed loop and low after it; QEMU models the
    MPS2 GPIO as an unimplemented device whose writes `-d unimp` logs, which is where the test reads them."""
    from pipeline.hil.harness_build import QEMU_CPUS

    report = esp32_build["report"]
    image = build_qemu(tmp_path / "ee.elf", 64, 10, report["model"], report["model_hash"], work=50, cpu=cpu)
    log = tmp_path / "qemu.log"
    with QemuDevice(image, free_tcp_port(), machine=QEMU_CPUS[cpu][1], log=log) as qemu:
        port = transport.open_port(qemu.url, 115200)
        device = Device(port, qemu.url, timeout=5.0)
        device.drain()
        device.load(bytes(range(64)))
        reply = device.infer(3, 1)
        info = {l.values[0].replace("-", "_"): l.values[1] for l in device.command("xinfo")
                if l.kind in ("x_text", "x_number")}
        laps = [int(l.values[0]) for l in device.command("timestamp") if l.kind == "lap_us"]
        port.close()
    assert reply.iterations == 3
    assert _dataout_writes(log) == [0, 1, 0]  # idle low at boot, high for the timed loop, low after it
    assert info["pin_edges"] == "2" and info["timestamp_pin"] == "1"
    assert laps and laps[0] < 60_000_000, laps  # counted from boot (instructions under -icount)


@QEMU
def test_qemu_energy_mode_image_pulses_the_pin(esp32_build, tmp_path):
    report = esp32_build["report"]
    image = build_qemu(tmp_path / "ee.elf", 64, 10, report["model"], report["model_hash"], work=50,
                       switches=("EE_ENERGY_MODE=1",))
    log = tmp_path / "qemu.log"
    with QemuDevice(image, free_tcp_port(), log=log) as qemu:
        port = transport.open_port(qemu.url, 9600)
        device = Device(port, qemu.url, timeout=5.0)
        device.drain()  # QEMU drops what the UART sent before a client connected: the banner's pulse is in the log
        info = {l.values[0].replace("-", "_"): l.values[1] for l in device.command("xinfo")
                if l.kind in ("x_text", "x_number")}
        lines = [l.text for l in device.command("timestamp")]
        port.close()
    assert info["mode"] == "energy" and info["baud"] == "9600" and not any("m-lap-us" in l for l in lines)
    assert _dataout_writes(log) == [1, 0, 1, 0, 1]  # idle high; a low pulse at boot and one for the command


def test_model_id_rule():
    assert [codegen.model_id(m) for m in ("ds_cnn", "mobilenet_v1", "resnet8", "autoencoder", "digits")] == \
        ["kws01", "vww01", "ic01", "ad01", "digits"]
    assert codegen.model_id("ds_cnn", zoo_model=False) == "ds_cnn"  # a user's file named like a zoo model
    assert codegen.model_id("digits", "kws01") == "kws01"


def test_model_id_option_reaches_the_firmware_and_the_profile_reply(esp32_build, tmp_path):
    """--model-id goes into the generated settings (MODEL_ID, which the TFLM backend reports) and report.json; the
    emulator, on the real harness core, answers `profile` with it as the MLCommons runner reads it."""
    from pipeline import boards
    from pipeline.hil.emulate import device_for_build

    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", "--model-id=kws01")
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = build_dir / "esp32" / "digits"
    assert '#define MODEL_ID "kws01"' in (folder / "generated" / "model_settings.h").read_text()
    assert json.loads((folder / "report.json").read_text())["model_id"] == "kws01"
    device = device_for_build(build_dir, boards.load_board("esp32"), "digits")
    device.take()
    assert b"m-model-[kws01]" in device.feed(b"profile%")
    assert b"m-x-model-[digits]" in device.feed(b"xinfo%")  # this project's own name stays in xinfo
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", "--model-id=bad id!")
    assert_clean_error(proc, "--model-id")


def test_emulate_realtime_paces_inferences_to_the_modelled_latency(esp32_build):
    from pipeline import boards
    from pipeline.hil.emulate import device_for_build

    device = device_for_build(esp32_build["build_dir"], boards.load_board("esp32"), "digits", realtime=True)
    device.feed(f"db load {device.input_bytes}%".encode())
    for _ in range(0, device.input_bytes, 32):
        device.feed(f"db {'00' * 32}%".encode())
    start = time.perf_counter()
    reply = device.feed(b"infer 20 0%").decode()
    elapsed = time.perf_counter() - start
    laps = [int(v) for v in re.findall(r"m-lap-us-(\d+)", reply)]
    modelled = (laps[1] - laps[0]) / 1e6
    assert modelled == pytest.approx(20 * device.latency_us / 1e6, rel=0.01)
    assert elapsed >= modelled  # the reply comes no sooner than the modelled time


def test_battery_life_rule_and_refusals():
    from pipeline.errors import PipelineError
    from pipeline.hil.energy import battery_life

    life = battery_life(100.0, 10_000, 2.0, 0.05, 1000, 3.7, "measured: PPK2", "datasheet")
    assert life.average_mw == pytest.approx(100 * 2 / 1000 + 0.05 * (1 - 0.02))
    assert life.hours == pytest.approx(1000 * 3.7 / life.average_mw)  # invoke compare's rule
    with pytest.raises(PipelineError, match="leaves no time to sleep"):
        battery_life(100.0, 10_000, 100.0, 0.05, 1000, 3.7, "x", "y")


def test_energy_mode_build_renders_each_framework_for_it(esp32_build, tmp_path):
    """`invoke build --energy-mode`: 9600 baud and EE_ENERGY_MODE=1 with the board's pin in the ESP-IDF, Zephyr and
    Arduino projects; a board whose console is the chip's USB, or whose file names no pin, is refused in one line."""
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    for board in ("esp32", "nucleo-l4r5zi", "nano33ble-arduino"):
        proc = run_invoke("build", f"--board={board}", f"--build-dir={build_dir}", "--energy-mode")
        assert proc.returncode == 0, proc.stderr[-2000:]
    esp = build_dir / "esp32" / "digits" / "firmware"
    assert "CONFIG_ESP_CONSOLE_UART_BAUDRATE=9600" in (esp / "sdkconfig.defaults").read_text()
    assert "EE_TIMESTAMP_GPIO=4 EE_ENERGY_MODE=1" in (esp / "main" / "CMakeLists.txt").read_text()
    zephyr = build_dir / "nucleo-l4r5zi" / "digits" / "firmware"
    assert "EE_ENERGY_MODE=1 EE_TIMESTAMP_PIN=1" in (zephyr / "CMakeLists.txt").read_text()
    assert "<&gpiof 13 0>" in (zephyr / "app.overlay").read_text()
    sketch = build_dir / "nano33ble-arduino" / "digits" / "firmware"
    ino = next(sketch.glob("*.ino")).read_text()
    assert "#define EE_ENERGY_MODE 1" in ino and "#define CONSOLE Serial1" in ino
    assert json.loads((build_dir / "esp32" / "digits" / "report.json").read_text())["energy_mode"] is True

    proc = run_invoke("build", "--board=xiao-esp32s3", f"--build-dir={build_dir}", "--energy-mode")
    assert_clean_error(proc, "energy mode", "usb-serial-jtag")
    no_pin = tmp_path / "nopin.toml"
    from pipeline.boards import BOARDS_DIR

    no_pin.write_text((BOARDS_DIR / "esp32.toml").read_text().split("\n[energy]")[0] + "\n")
    proc = run_invoke("build", f"--board={no_pin}", f"--build-dir={build_dir}", "--energy-mode")
    assert_clean_error(proc, "energy mode needs the timestamp pin", "[energy]")
    proc = run_invoke("build", f"--board={no_pin}", f"--build-dir={build_dir}")  # performance mode: no pin, fine
    assert proc.returncode == 0, proc.stderr[-2000:]
    main_cmake = (build_dir / "esp32" / "digits" / "firmware" / "main" / "CMakeLists.txt").read_text()
    assert "EE_TIMESTAMP_GPIO=-1 EE_ENERGY_MODE=0" in main_cmake
