"""The Zephyr application rendered for the Cortex-M boards; a STAND-IN `west` (Zephyr cannot be installed by the
test suite) checks the commands `invoke build` and `invoke flash` run."""
import os
import shutil

import pytest

from conftest import assert_clean_error, configure_fails_once, run_invoke, standin_tool
from pipeline import boards
from pipeline.firmware import projects

ZEPHYR_BOARDS = {"nucleo-l4r5zi": ("nucleo_l4r5zi", "cmsis-nn"), "nano33ble": ("arduino_nano_33_ble", "cmsis-nn"),
                 "nrf52840dk": ("nrf52840dk/nrf52840", "cmsis-nn"), "pico2": ("rpi_pico2/rp2350a/m33", "cmsis-nn"),
                 "disco-f746ng": ("stm32f746g_disco", "cmsis-nn"),
                 "rp2040": ("rpi_pico", "reference"), "qemu-m4": ("mps2/an386", "cmsis-nn")}


@pytest.fixture(scope="module")
def zephyr_builds(esp32_build, tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("zephyr")
    shutil.copytree(esp32_build["build_dir"], build_dir, dirs_exist_ok=True)
    for name in ZEPHYR_BOARDS:
        proc = run_invoke("build", f"--board={name}", f"--build-dir={build_dir}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    return build_dir


@pytest.mark.parametrize("name", list(ZEPHYR_BOARDS))
def test_zephyr_app_is_complete_and_consistent(zephyr_builds, name):
    zephyr_board, kernels = ZEPHYR_BOARDS[name]
    board = boards.load_board(name)
    assert (board.framework, board.zephyr_board, board.kernels) == ("zephyr", zephyr_board, kernels)
    project = zephyr_builds / name / "digits" / "firmware"
    cmake = (project / "CMakeLists.txt").read_text()
    # the harness and the model library `invoke export` gives the user (digits.cc, its arena and model files)
    for source in ("main.cc", "ee_core.c", "tflm_backend.cc", "model_runner.cc", "digits.cc", "digits_arena.cc",
                   "digits_model_data.cc", "digits_model_settings.cc"):
        assert f"src/{source}" in cmake and (project / "src" / source).is_file(), source
    assert "EE_MAX_DB_BYTES=64u" in cmake and "find_package(Zephyr" in cmake
    for name_ in projects.COMMON_SOURCES + ("digits.h", "model_library.h", "digits_config.h"):
        assert (project / "src" / os.path.basename(name_)).is_file(), name_
    prj = (project / "prj.conf").read_text()
    assert "CONFIG_TENSORFLOW_LITE_MICRO=y" in prj and "CONFIG_CPP=y" in prj and "CONFIG_STD_CPP17=y" in prj
    assert ("CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS=y" in prj) == (kernels == "cmsis-nn")
    main = (project / "src" / "main.cc").read_text()
    assert "@" not in main.replace("@param", "") and "uart_irq_rx_enable" in main and "ring_buf_get" in main
    assert ('"qemu-icount"' in main) == (board.qemu_machine is not None)
    # the DWT cycle counter at the CPU clock where the core has one and the clock is the board's own
    dwt = board.qemu_machine is None and board.core not in projects.Zephyr.NO_DWT_CORES
    assert (f"EE_CLOCK_DWT=1 EE_CPU_MHZ={board.clock_mhz}" in cmake) == dwt and ("EE_CLOCK_DWT=0" in cmake) != dwt
    assert "CONFIG_UART_INTERRUPT_DRIVEN=y" in prj and "CONFIG_RING_BUFFER=y" in prj
    settings = (project / "src" / "digits_model_settings.h").read_text()
    assert "kTensorArenaSize" in settings
    # the timestamp pin: the devicetree alias the rendered overlay defines on the board file's GPIO
    overlay = (project / "app.overlay").read_text()
    assert "mlperf-timestamp = &mlperf_timestamp_pin;" in overlay and f"<{board.timestamp_gpio} 0>" in overlay
    assert "EE_ENERGY_MODE=0 EE_TIMESTAMP_PIN=1" in cmake and "CONFIG_GPIO=y" in prj
    assert "GPIO_DT_SPEC_GET(DT_ALIAS(mlperf_timestamp), gpios)" in main


def test_build_and_flash_run_west_with_the_board(zephyr_builds, tmp_path):
    """STAND-IN west (named as such): records its arguments and, for `build`, leaves a zephyr.elf behind."""
    fake_bin, calls = standin_tool(tmp_path, "west", "Zephyr's west: a Zephyr workspace is not installable by the tests",
                                   'if [ "$1" = build ]; then mkdir -p "$5/zephyr" && echo elf > "$5/zephyr/zephyr.elf"; fi')
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "ZEPHYR_BASE": str(tmp_path / "zephyr")}
    build_dir = tmp_path / "b"
    shutil.copytree(zephyr_builds, build_dir)
    proc = run_invoke("build", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    project = build_dir / "nucleo-l4r5zi" / "digits" / "firmware"
    assert calls.read_text().split() == ["build", "-b", "nucleo_l4r5zi", "-d", str(project / "build"), str(project)]
    proc = run_invoke("flash", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}", "--port=0670FF", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls.read_text().splitlines()[-1].split() == ["flash", "-d", str(project / "build"), "--runner", "openocd"]


def test_a_failed_west_configure_does_not_break_the_next_build(zephyr_builds, tmp_path):
    """STAND-IN west (named as such, conftest.configure_fails_once): its first configure fails and leaves a
    half-made build folder, in which a later build would fail in Ninja."""
    fake_bin, calls = standin_tool(tmp_path, "west", "Zephyr's west: a Zephyr workspace is not installable by the tests",
                                   'if [ "$1" = build ]; then\n'
                                   + configure_fails_once("$5", tmp_path / "failed-once", "zephyr/zephyr.elf") + "fi")
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "ZEPHYR_BASE": str(tmp_path / "zephyr")}
    build_dir = tmp_path / "b"
    shutil.copytree(zephyr_builds, build_dir)
    first = run_invoke("build", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}", env=env)
    assert_clean_error(first, "firmware build failed", "west build")
    west_build = build_dir / "nucleo-l4r5zi" / "digits" / "firmware" / "build"
    assert (west_build / "CMakeCache.txt").is_file() and not (west_build / "build.ninja").exists()
    again = run_invoke("build", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "holds no complete configure" in again.stdout
    assert (west_build / "build.ninja").is_file() and (west_build / "zephyr" / "zephyr.elf").is_file()
    assert len(calls.read_text().splitlines()) == 2


def test_without_west_the_build_prints_the_command_and_hil_stops_before_flashing(zephyr_builds):
    report = (zephyr_builds / "nucleo-l4r5zi" / "digits" / "report.json").read_text()
    assert "west build -b nucleo_l4r5zi" in report
    env = {"PATH": "/usr/bin:/bin", "ZEPHYR_BASE": ""}
    import sys

    proc = run_invoke("hil", "--board=nucleo-l4r5zi", "--port=/dev/null", f"--build-dir={zephyr_builds}",
                      env={**env, "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"})
    assert_clean_error(proc, "hil needs compiled firmware", "west")


MCPU = {"cortex-m4f": ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], "cortex-m0plus": ["-mcpu=cortex-m0plus"],
        "cortex-m7": ["-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
        "cortex-m33-nodsp": ["-mcpu=cortex-m33+nodsp", "-mfloat-abi=soft"]}


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi (.ci/run installs it)")
@pytest.mark.parametrize("name", list(ZEPHYR_BOARDS))
def test_zephyr_port_compiles_against_the_harness_core(zephyr_builds, name, tmp_path):
    """The rendered main.cc and the harness core with arm-none-eabi -Werror, the CMakeLists' definitions and the
    board's CPU; Zephyr's own headers are STAND-INs (tests/standin/zephyr: declarations only, named as such)."""
    import re
    import subprocess

    board = boards.load_board(name)
    project = zephyr_builds / name / "digits" / "firmware"
    cmake = (project / "CMakeLists.txt").read_text()
    defines = [f"-D{d}" for line in re.findall(r"target_compile_definitions\(app PRIVATE ([^)]*)\)", cmake)
               for d in line.split()]
    cpu = ["-mthumb", *MCPU[board.core]]
    standin = os.path.join(os.path.dirname(__file__), "standin", "zephyr")
    for compiler, std, source in (("arm-none-eabi-g++", "-std=c++17", "main.cc"), ("arm-none-eabi-gcc", "-std=c99", "ee_core.c")):
        proc = subprocess.run([compiler, std, *cpu, "-Os", "-Wall", "-Wextra", "-Werror", *defines, f"-I{standin}",
                               f"-I{project / 'src'}", "-c", str(project / "src" / source), "-o",
                               str(tmp_path / (source + ".o"))], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
