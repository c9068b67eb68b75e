"""The Arduino sketch rendered for the Nano 33 BLE (Mbed OS core); a STAND-IN `arduino-cli` (no Arduino core can
be installed by the test suite) checks the commands `invoke build` and `invoke flash` run."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import assert_clean_error, run_invoke, standin_tool
from pipeline import boards
from pipeline.firmware import projects

STANDIN = os.path.join(os.path.dirname(__file__), "standin", "arduino")


@pytest.fixture(scope="module")
def arduino_build(esp32_build, tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("arduino")
    shutil.copytree(esp32_build["build_dir"], build_dir, dirs_exist_ok=True)
    proc = run_invoke("build", "--board=nano33ble-arduino", f"--build-dir={build_dir}",
                      env={"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return build_dir


def test_sketch_is_complete_and_consistent(arduino_build):
    board = boards.load_board("nano33ble-arduino")
    sketch = arduino_build / "nano33ble-arduino" / "digits" / "firmware"
    ino = (sketch / "firmware.ino").read_text()  # arduino-cli wants the main file named after the folder
    assert "@" not in ino and f"#include <{projects.Arduino.LIBRARY_HEADER}>" in ino
    assert "ee_init(&ctx, &port, TflmBackend())" in ino and "CONSOLE.available()" in ino
    # performance mode on the USB Serial; the timestamp pin the board file names, driven by digitalWrite
    assert "#define EE_ENERGY_MODE 0" in ino and "#define CONSOLE Serial\n" in ino
    assert f"#define TIMESTAMP_PIN {board.timestamp_gpio}" in ino and "digitalWrite(TIMESTAMP_PIN" in ino
    for name in projects.COMMON_SOURCES + ("digits.h", "digits.cc", "digits_arena.cc", "digits_model_data.cc",
                                           "digits_model_settings.h", "model_library.h"):
        base = os.path.basename(name)
        assert (sketch / projects.Arduino.sketch_name(base)).is_file(), base
    assert not list(sketch.glob("*.cc"))  # arduino-cli would not compile them
    # the model library finds the TFLM library through its main header, as an exported Arduino library does
    assert (sketch / "digits.cpp").read_text().count(f"#include <{projects.Arduino.LIBRARY_HEADER}>") == 1
    settings = (sketch / "digits_model_settings.h").read_text()
    assert "kTensorArenaSize" in settings
    config = (sketch / "ee_config.h").read_text()
    assert "#define EE_MAX_DB_BYTES 64u" in config  # one digits input
    yaml = (sketch / "sketch.yaml").read_text()
    assert f"fqbn: {board.arduino_fqbn}" in yaml and f"platform: {board.arduino_platform}" in yaml
    assert f"{projects.Arduino.LIBRARY} ({projects.Arduino.LIBRARY_VERSION})" in yaml
    report = (arduino_build / "nano33ble-arduino" / "digits" / "report.json").read_text()
    assert "arduino-cli compile --fqbn arduino:mbed_nano:nano33ble" in report


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi (.ci/run installs it)")
def test_sketch_compiles_against_the_harness_core(arduino_build, tmp_path):
    """The sketch's main file (as arduino-cli does: .ino -> .cpp with Arduino.h first) and the harness core with
    its ee_config.h, arm-none-eabi -Werror; the Arduino API is a STAND-IN (tests/standin/arduino, named as such)."""
    sketch = arduino_build / "nano33ble-arduino" / "digits" / "firmware"
    main = tmp_path / "firmware.ino.cpp"
    main.write_text("#include <Arduino.h>\n" + (sketch / "firmware.ino").read_text())
    cpu = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"]  # as the Mbed core builds
    for compiler, std, source in (("arm-none-eabi-g++", "-std=gnu++17", main),
                                  ("arm-none-eabi-gcc", "-std=gnu11", sketch / "ee_core.c")):
        proc = subprocess.run([compiler, std, *cpu, "-Os", "-Wall", "-Wextra", "-Werror", f"-I{STANDIN}",
                               f"-I{sketch}", "-c", str(source), "-o", str(tmp_path / "out.o")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(["arm-none-eabi-gcc", "-std=gnu11", *cpu, f"-I{sketch}", "-dM", "-E",
                           str(sketch / "ee_core.h")], capture_output=True, text=True)
    assert "#define EE_MAX_DB_BYTES 64u" in proc.stdout  # ee_config.h reached the core


def test_build_and_flash_run_arduino_cli_with_the_fqbn(arduino_build, tmp_path):
    """STAND-IN arduino-cli (named as such): records its arguments and, for `compile`, leaves a .bin behind."""
    fake_bin, calls = standin_tool(tmp_path, "arduino-cli", "an Arduino core is not installable by the tests",
                                   'if [ "$1" = compile ]; then mkdir -p "$5" && echo bin > "$5/firmware.ino.bin"; fi')
    env = {"PATH": f"{fake_bin}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"}
    build_dir = tmp_path / "b"
    shutil.copytree(arduino_build, build_dir)
    proc = run_invoke("build", "--board=nano33ble-arduino", f"--build-dir={build_dir}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sketch = build_dir / "nano33ble-arduino" / "digits" / "firmware"
    assert calls.read_text().split() == ["compile", "--fqbn", "arduino:mbed_nano:nano33ble", "--output-dir",
                                         str(sketch / "build"), str(sketch)]
    proc = run_invoke("flash", "--board=nano33ble-arduino", f"--build-dir={build_dir}", "--port=/dev/ttyACM0", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls.read_text().splitlines()[-1].split() == [
        "upload", "-p", "/dev/ttyACM0", "--fqbn", "arduino:mbed_nano:nano33ble", "--input-dir",
        str(sketch / "build"), str(sketch)]


def test_without_arduino_cli_hil_stops_before_flashing_naming_it(arduino_build):
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"}
    proc = run_invoke("hil", "--board=nano33ble-arduino", "--port=/dev/null", f"--build-dir={arduino_build}", env=env)
    assert_clean_error(proc, "hil needs compiled firmware", "arduino-cli is not on PATH")


def test_an_arduino_board_without_its_fqbn_is_refused(tmp_path):
    text = (boards.BOARDS_DIR / "nano33ble-arduino.toml").read_text().replace("arduino_fqbn", "# arduino_fqbn")
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(Exception, match="an arduino board needs 'arduino_fqbn'"):
        boards.load_board(str(tmp_path / "b.toml"))
