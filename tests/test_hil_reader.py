"""The reader: protocol parsing (fuzzed), measurement against the host harness and the emulator, faults."""
import csv
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, assert_clean_error, harness_args, run_invoke
from pipeline import boards
from pipeline.errors import PipelineError
from pipeline.hil import flash, protocol, transport
from pipeline.hil.emulate import Serving, device_for_build
from pipeline.hil.errors import DeviceError, DeviceReset, DeviceTimeout, WrongFirmware
from pipeline.hil.harness_build import HostDevice
from pipeline.hil.measure import MeasureOptions, measure


# -- protocol parser -----------------------------------------------------------------------------------
@given(st.text())
def test_parse_line_never_raises(text):
    line = protocol.parse_line(text)
    assert line is None or line.text in text


VALID = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: (f"m-lap-us-{n}", "lap_us", (str(n),))),
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=12).map(
        lambda v: (f"m-results-[{','.join(f'{x:.3f}' for x in v)}]", "results", (",".join(f"{x:.3f}" for x in v),))),
    st.binary(max_size=40).map(lambda b: (f"m-x-raw-[{b.hex()}]", "x_raw", (b.hex(),))),
    st.just(("m-ready", "ready", ())),
    st.text("abcdefghijklmnopqrstuvwxyz :'", max_size=30).map(lambda t: (f"e-[{t}]", "error", (t,))),
)


@settings(max_examples=300)
@given(VALID, st.text(alphabet=st.characters(blacklist_characters="me\n"), max_size=20))
def test_known_lines_are_found_behind_noise(line, noise):
    text, kind, values = line
    parsed = protocol.parse_line(noise + text + "\r")
    assert parsed is not None and parsed.kind == kind and parsed.values == values


def test_partial_line_glued_to_a_reply_is_recovered():
    assert protocol.parse_line("m-lapm-name-dut-[mcu-deploy]").kind == "name"
    assert protocol.parse_line("\ufffd\ufffd#noise") is None


def test_db_commands_match_the_mlcommons_runner():
    commands = protocol.db_commands(bytes(range(64)))
    assert commands[0] == "db load 64"
    assert [len(c) for c in commands[1:]] == [65, 65, 7]  # 31, 31 and 2 bytes, as the runner sends them
    assert all(len(c) <= protocol.MAX_COMMAND for c in commands)
    assert protocol.lap_delta_us(2**32 - 10, 5) == 15


# -- measuring the host harness over a pseudo-terminal ----------------------------------------------------
def _measure(esp32_build, port, tmp_path, **kw):
    opts = MeasureOptions(board="esp32", port=port, build_dir=esp32_build["build_dir"], runs=kw.pop("runs", 5),
                          inputs=kw.pop("inputs", 5), out_dir=tmp_path / "out", timeout=kw.pop("timeout", 2.0), **kw)
    return measure(opts, log=lambda _: None)


def test_measure_host_harness_writes_every_result_file(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dev:
        result = _measure(esp32_build, dev.port, tmp_path, runs=6, inputs=4)
    assert result["source"] == "test-backend" and result["accuracy"] is None
    assert result["bit_exact"] == 4 and result["reference"] == "test-backend copy"
    assert len(result["runs"]) == 6 and result["latency_us"]["min"] <= result["latency_us"]["median"]
    log = [json.loads(l) for l in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log] == ["latency"] * 6 + ["input"] * 4
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(rows) == 6 and {r["source"] for r in rows} == {"test-backend"}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["bit_exact"] == 4
    assert "(test-backend)" in (tmp_path / "out" / "summary.md").read_text()
    # The board's power times a host's latency would be an invented figure: no energy, and it says why.
    assert result["energy_uj"] is None and "test-backend" in result["energy_source"]
    assert result["device"]["platform"] == "host"


def test_estimated_energy_is_board_power_times_latency():
    from pipeline.hil.dut import InferReply
    from pipeline.hil.energy import EstimatedEnergy

    board = boards.load_board("esp32")
    meter = EstimatedEnergy(board)
    assert meter.label.startswith("estimated")
    assert meter.per_inference_uj(InferReply(4, 8000, [], {})) == pytest.approx(board.active_power_mw * 2000 / 1000)


def test_measure_profile_reads_each_operator_and_checks_it_against_the_build(host_harness, esp32_build, tmp_path):
    """The test backend times two phases; the build has 7 operators, so the reader refuses to pair them."""
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dev:
        with pytest.raises(PipelineError, match="device timed 2 operators, the model has 7"):
            _measure(esp32_build, dev.port, tmp_path, runs=2, inputs=0, profile=True)
    log = [json.loads(l) for l in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    profile = [r for r in log if r["kind"] == "profile"][0]
    assert [name for name, _ in profile["ops"]] == ["TEST_HASH", "TEST_OUTPUTS"]
    assert all(us >= 0 for _, us in profile["ops"]) and profile["source"] == "test-backend"


def test_measure_cli_against_the_host_harness(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dev:
        proc = run_invoke("measure", "--board=esp32", f"--port={dev.port}", f"--build-dir={esp32_build['build_dir']}",
                          "--runs=3", "--inputs=3", f"--out={tmp_path}", f"--junit={tmp_path / 'junit.xml'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"latency \(test-backend\): median [\d.]+ us", proc.stdout)
    assert "[test-backend] raw outputs equal to test-backend copy: 3 of 3" in proc.stdout
    assert all(line.startswith("[test-backend]") for line in proc.stdout.splitlines()
               if "latency" in line or "energy" in line or "raw outputs" in line)
    assert 'failures="0"' in (tmp_path / "junit.xml").read_text()


def test_firmware_without_extensions_is_unknown_source_without_energy_and_skips_the_profile(esp32_build, tmp_path):
    """The harness core built with EE_EXTENSIONS=0 answers only MLPerf Tiny's commands, as MLCommons' own device code
    does: no xinfo says what timed the inferences, so the latency is of unknown source, has no energy estimate, and
    --profile (no xprofile) is skipped with a note instead of stopping after the runs."""
    from pipeline.hil.harness_build import build_host

    reference_like = build_host(tmp_path / "ee_plain", sanitize=True, extensions=False)
    with HostDevice(reference_like, *harness_args(esp32_build["report"])) as dev:
        proc = run_invoke("measure", "--board=esp32", f"--port={dev.port}", f"--build-dir={esp32_build['build_dir']}",
                          "--runs=3", "--inputs=2", "--profile", f"--out={tmp_path / 'out'}",
                          f"--db={tmp_path / 'hil.sqlite'}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"^\[unknown source\] latency \(unknown source\): median [\d.]+ us", proc.stdout, re.M)
    assert "energy per inference" not in proc.stdout
    assert "--profile skipped: the firmware has no xprofile extension" in proc.stdout
    assert "(device)" not in proc.stdout
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["source"] == "unknown source" and result["energy_uj"] is None
    assert result["energy_source"].startswith("none") and result["bit_exact"] is None
    assert not (tmp_path / "out" / "profile.json").exists()


# -- the emulator ----------------------------------------------------------------------------------------
def test_emulated_device_answers_with_tflm_outputs(esp32_build, tmp_path):
    board = boards.load_board("esp32")
    with Serving(device_for_build(esp32_build["build_dir"], board, "digits")) as port:
        result = _measure(esp32_build, port, tmp_path, runs=3, inputs=40, profile=True)
    assert result["source"] == "emulated" and result["device"]["backend"] == "emulated"
    assert result["bit_exact"] == 40 and result["reference"] == "host TFLM"
    assert result["accuracy"] >= 90.0  # the real model's outputs, on real test digits
    from pipeline.target import costmodel, graph

    estimate = costmodel.estimate(graph.read(esp32_build["dir"] / "model.tflite"), board)
    assert result["latency_us"]["median"] == pytest.approx(estimate.latency_us, abs=1)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.count("emulated") >= 2
    # --profile: the emulator's per-operator times (the estimates, labelled emulated) beside the estimates.
    profile = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert profile["measured"]["source"] == "emulated"
    assert [r["op"] for r in profile["rows"]] == [e.op for e in estimate.per_op]
    assert all(abs(r["measured_us"] - r["est_us"]) <= 0.5 for r in profile["rows"])
    assert "measured us (emulated)" in (tmp_path / "out" / "profile.md").read_text()


def test_emulate_task_serves_until_stopped(esp32_build, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "emulate", "--board=esp32",
                             f"--build-dir={esp32_build['build_dir']}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        said = [proc.stdout.readline() for _ in range(2)]  # the build folder it serves, then the device
        assert said[0].startswith(f"build folder: {esp32_build['dir']}"), "".join(said) + proc.stderr.read()
        first = said[1]
        assert first.startswith("EMULATED esp32"), first + proc.stderr.read()
        port = re.search(r"on (/dev/\S+)", first).group(1)
        result = _measure(esp32_build, port, tmp_path, runs=2, inputs=2)
        assert result["source"] == "emulated"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- faults ----------------------------------------------------------------------------------------------
def test_no_board_on_usb_names_the_ids():
    from pipeline.hil.transport import find_port

    with pytest.raises(PipelineError, match=r"no serial port of a esp32 found \(USB ids 10c4:ea60, 1a86:7523\)"):
        find_port(("10c4:ea60", "1a86:7523"), "esp32")


def test_missing_port(esp32_build, tmp_path):
    with pytest.raises(PipelineError, match="/dev/ttyNOPE0 does not exist"):
        _measure(esp32_build, "/dev/ttyNOPE0", tmp_path)
    assert_clean_error(run_invoke("measure", "--port=/dev/ttyNOPE0", f"--build-dir={esp32_build['build_dir']}"),
                       "/dev/ttyNOPE0")


def test_busy_port(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dev:
        holder = serial.Serial(dev.port, 115200, exclusive=True)
        try:
            with pytest.raises(PipelineError, match="busy"):
                _measure(esp32_build, dev.port, tmp_path)
        finally:
            holder.close()


def test_silent_device_times_out_after_retries(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10, "--silent-after", "0")) as dev:
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match="no answer .* to 'name' within 0.5 s"):
            _measure(esp32_build, dev.port, tmp_path, timeout=0.5)
        elapsed = time.monotonic() - start
    assert 1.4 < elapsed < 10  # three tries of 0.5 s, like the MLCommons runner's retries, then a clear stop


def test_garbage_and_partial_lines_are_skipped(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10, "--garbage")) as dev:
        result = _measure(esp32_build, dev.port, tmp_path, runs=3, inputs=3)
    assert result["noise_lines"] > 10 and result["bit_exact"] == 3


def test_reset_mid_run_keeps_what_was_measured(host_harness, esp32_build, tmp_path):
    # name, profile, xinfo, db load, 3 x db = 7 commands; then the 3rd timed infer (command 10) meets a reset.
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10, "--reset-after", "10")) as dev:
        with pytest.raises(DeviceReset, match="rebooted during 'infer 1 0'.*2 runs kept in"):
            _measure(esp32_build, dev.port, tmp_path, runs=5)
    log = [json.loads(l) for l in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log] == ["latency", "latency", "fault"]


def test_wrong_firmware_is_refused(host_harness, esp32_build, tmp_path):
    report = dict(esp32_build["report"], model_hash="feedfacefeedface")
    with HostDevice(host_harness, *harness_args(report)) as dev:
        with pytest.raises(WrongFirmware, match="feedfacefeedface.*rebuild the host harness.*invoke firmware-host"):
            _measure(esp32_build, dev.port, tmp_path)


def test_wrong_firmware_advice_fits_what_answered(tmp_path):
    """Flash only where a flasher applies: an emulator is restarted, a QEMU image or host harness rebuilt."""
    from dataclasses import replace

    from pipeline.hil.measure import reload_advice

    esp32 = boards.load_board("esp32")
    assert "invoke flash --board=esp32" in reload_advice({"backend": "tflm"}, esp32, "digits", tmp_path)
    assert "invoke emulate" in reload_advice({"backend": "emulated"}, esp32, "digits", tmp_path)
    assert "invoke firmware-qemu" in reload_advice({"platform": "qemu-icount"}, esp32, "digits", tmp_path)
    own = reload_advice({}, replace(esp32, flashers=("jlink",)), "digits", tmp_path)
    assert "invoke flash" not in own and "your board's own tool" in own


def test_error_reply_is_reported(host_harness, esp32_build, tmp_path):
    from pipeline.hil.dut import Device

    with HostDevice(host_harness, *harness_args(esp32_build["report"], 32, 10)) as dev:
        # The reader refuses this firmware by its sizes before uploading anything ...
        with pytest.raises(PipelineError, match="another model: it takes 32-byte inputs, the build's model 64"):
            _measure(esp32_build, dev.port, tmp_path)
        # ... and a device's own e- reply, as any firmware gives it, is reported with the port.
        port = transport.open_port(dev.port, 115200)
        device = Device(port, dev.port, timeout=2.0)
        device.drain()
        device.load(bytes(64))
        with pytest.raises(DeviceError, match="Input has 64 bytes, model expects 32"):
            device.infer(1, 0)
        port.close()


def test_baseline_regression_fails_with_junit(host_harness, esp32_build, tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"latency_us": {"median": 0.001}}))
    junit = tmp_path / "junit.xml"
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10)) as dev:
        with pytest.raises(PipelineError, match="regression against the baseline: latency median"):
            _measure(esp32_build, dev.port, tmp_path, baseline=baseline, max_regression=10.0, junit=junit)
    assert 'failures="1"' in junit.read_text() and "latency median" in junit.read_text()
    assert (tmp_path / "out" / "results.json").is_file()  # the figures are written before the verdict


# -- flashing --------------------------------------------------------------------------------------------
def test_esptool_needs_a_compiled_firmware(esp32_build, tmp_path):
    proc = run_invoke("flash", "--board=esp32", "--port=/dev/null", f"--build-dir={esp32_build['build_dir']}")
    assert_clean_error(proc, "flasher_args.json", "idf.py")


def test_esptool_reports_a_port_without_a_chip(host_harness, esp32_build, tmp_path):
    """Real esptool against the host harness's pty: no ESP32 bootloader answers there."""
    build = tmp_path / "firmware" / "build"
    (build / "bootloader").mkdir(parents=True)
    (build / "bootloader" / "bootloader.bin").write_bytes(b"\xff" * 64)
    (build / "app.bin").write_bytes(b"\xff" * 64)
    (build / "flasher_args.json").write_text(json.dumps({
        "write_flash_args": ["--flash_mode", "dio", "--flash_size", "4MB", "--flash_freq", "40m"],
        "flash_files": {"0x10000": "app.bin", "0x1000": "bootloader/bootloader.bin"},
        "extra_esptool_args": {"after": "hard_reset", "before": "default_reset", "stub": True, "chip": "esp32"}}))
    board = boards.load_board("esp32")
    esptool = flash.Esptool(connect_attempts=1)
    command = esptool.command(board, tmp_path / "firmware", "/dev/pts/x")
    assert command[command.index("write-flash") + 1:] == ["--flash-mode", "dio", "--flash-size", "4MB",
                                                           "--flash-freq", "40m", "0x1000",
                                                           str(build / "bootloader" / "bootloader.bin"),
                                                           "0x10000", str(build / "app.bin")]
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dev:
        with pytest.raises(PipelineError, match=f"esp32 on {dev.port}: hold BOOT"):
            flash.flash(board, tmp_path / "firmware", dev.port, flasher=esptool)


def test_flasher_choice_follows_the_board_file():
    assert flash.choose(boards.load_board("esp32"), None).name == "esptool"
    assert flash.choose(boards.load_board("nucleo-l4r5zi"), None).name == "west"  # Zephyr's own runner first
    assert flash.choose(boards.load_board("nucleo-l4r5zi"), "pyocd").name == "pyocd"
    assert flash.choose(boards.load_board("nano33ble"), None).name == "west"
    with pytest.raises(PipelineError, match="not flashed with 'esptool'"):
        flash.choose(boards.load_board("rp2040"), "esptool")
    pyocd = flash.Pyocd()
    command = pyocd.command(boards.load_board("nucleo-l4r5zi"), None, None, image=__import__("pathlib").Path(__file__))
    assert command[:4] == ["pyocd", "flash", "--target", "stm32l4r5zitx"]


def test_firmware_energy_without_an_onboard_meter(host_harness, esp32_build, tmp_path):
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as dev:
        with pytest.raises(PipelineError, match="no on-board meter"):
            _measure(esp32_build, dev.port, tmp_path, energy="firmware")


def test_ppk2_needs_its_port():
    from pipeline.hil.energy import meter_for

    with pytest.raises(PipelineError, match="--energy=ppk2:/dev/ttyACM1"):
        meter_for("ppk2", boards.load_board("esp32"))
    with pytest.raises(PipelineError, match="unknown --energy 'joules'"):
        meter_for("joules", boards.load_board("esp32"))


def test_hil_stops_before_flashing_uncompiled_firmware(esp32_build):
    proc = run_invoke("hil", "--board=esp32", "--port=/dev/null", f"--build-dir={esp32_build['build_dir']}")
    assert_clean_error(proc, "hil needs compiled firmware", "idf.py")


def test_firmware_for_another_model_is_refused_naming_what_differs(host_harness, esp32_build, tmp_path):
    """Same model hash (a firmware that lies, or lacks the check), other sizes: the sizes alone give it away."""
    with HostDevice(host_harness, *harness_args(esp32_build["report"], input_bytes=490, outputs=12)) as dev:
        with pytest.raises(PipelineError, match=r"another model: it takes 490-byte inputs, the build's model 64; "
                                                 r"it gives 12 outputs, the build's model 10"):
            _measure(esp32_build, dev.port, tmp_path)


def test_a_brought_model_is_measured_by_its_name(esp32_build, tmp_path):
    """generate --tflite=kws.tflite, then measure --model=kws: its build folder, hash and shapes; the built-in
    sample without --data (latency and bit-exact outputs), the test split with --data (accuracy too)."""
    brought = tmp_path / "kws.tflite"
    shutil.copy(esp32_build["dir"] / "model.tflite", brought)
    build_dir = tmp_path / "b"
    proc = run_invoke("generate", f"--tflite={brought}", "--board=esp32", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = boards.load_board("esp32")
    with Serving(device_for_build(build_dir, board, "kws")) as port:
        base = dict(board="esp32", model="kws", port=port, build_dir=build_dir, runs=2, timeout=2.0)
        alone = measure(MeasureOptions(**base, out_dir=tmp_path / "m1"), log=lambda _: None)
        with_data = measure(MeasureOptions(**base, data="digits", inputs=10, out_dir=tmp_path / "m2"),
                            log=lambda _: None)
    assert alone["inputs_checked"] == 1 and alone["bit_exact"] == 1 and alone["accuracy"] is None
    assert with_data["inputs_checked"] == 10 and with_data["bit_exact"] == 10 and with_data["accuracy"] >= 80


def test_run_history_stores_every_run_and_gates_on_an_injected_regression(host_harness, esp32_build, tmp_path):
    """Two runs of the host harness, then a slower firmware (more work per inference): history:2 trips."""
    db = tmp_path / "hil.sqlite"
    # Enough work per inference that the host's timing noise stays well inside the allowed regression.
    args = [a if a != "20" else "2000" for a in harness_args(esp32_build["report"])]
    for attempt in range(2):
        with HostDevice(host_harness, *args) as dev:
            _measure(esp32_build, dev.port, tmp_path / f"ok{attempt}", runs=5, inputs=1, db=db,
                     baseline="history:2", max_regression=400.0)  # the second run gates against the first
    slower = [a if a != "2000" else "60000" for a in args]  # 30x the work: the "commit" that made it slower
    with HostDevice(host_harness, *slower) as dev:
        with pytest.raises(PipelineError, match=r"regression against the baseline: latency median .* median .* of "
                                                 r"the last 2 runs"):
            _measure(esp32_build, dev.port, tmp_path / "slow", runs=5, inputs=1, db=db, baseline="history:2",
                     max_regression=400.0)  # 30x the work trips it; host timing noise on a loaded machine does not
    from pipeline.hil import history

    rows = history.recent(db)
    assert [r["id"] for r in rows] == [3, 2, 1]  # the regressed run is stored too: the history is the evidence
    assert {r["source"] for r in rows} == {"test-backend"} and rows[0]["model_hash"] == esp32_build["report"]["model_hash"]
    assert rows[0]["latency_median_us"] > 1.1 * rows[1]["latency_median_us"]
    proc = run_invoke("history", f"--db={db}", "--board=esp32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([l for l in proc.stdout.splitlines() if "test-backend" in l]) == 3
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert_clean_error(run_invoke("history", f"--db={tmp_path / 'none.sqlite'}"), "no run history")
