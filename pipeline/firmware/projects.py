"""Stage 8: render the firmware project for the board's framework, and compile it when its tool is on PATH.

One small class per framework behind one interface, chosen by the board file's `framework` field
(as Zephyr's west picks a runner). A framework without a renderer still gets the generated sources.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.boards import esp_partitions
from pipeline.boards import Board
from pipeline.firmware import codegen, library
from pipeline.errors import PipelineError

FIRMWARE_DIR = library.FIRMWARE_DIR
# Copied into every rendered project: the benchmark harness core, its TFLM backend and model_runner, a thin user of
# the model library's C API. The library itself (firmware/library/, rendered with the model's name) is what
# `invoke export` gives the user: the harness is built from the same sources.
COMMON_SOURCES = ("common/model_runner.h", "common/model_runner.cc", "common/tflm_backend.h",
                  "common/tflm_backend.cc", "harness/ee_core.h", "harness/ee_core.c")


def library_name(generated_dir: Path) -> str:
    """The library's name where the build does not give one: the model's (the C prefix of its symbols)."""
    return library.c_name(str(codegen.settings(generated_dir)["model_name"]))


def render_library(board: Board, generated_dir: Path, folder: Path, source_ext: str = ".cc", tflm_prelude: str = "",
                   name: str | None = None) -> library.LibraryFiles:
    """The model library and the harness's way to it (model_library.h, per-operator timing on) into `folder`."""
    return render_harness_library(generated_dir, folder, board.name, board.kernels, source_ext, tflm_prelude, name)


def render_harness_library(generated_dir: Path, folder: Path, board_name: str, kernels: str, source_ext: str = ".cc",
                           tflm_prelude: str = "", name: str | None = None) -> library.LibraryFiles:
    prefix = name or library_name(generated_dir)
    files = library.render(generated_dir, prefix, folder, board_name, kernels, source_ext, tflm_prelude)
    library.render_harness_header(prefix, folder)
    return files


@dataclass
class FirmwareResult:
    framework: str
    project_dir: str | None
    compiled: bool
    build_command: str | None
    message: str


class Framework:
    """Renders a buildable project around the generated model files."""

    name = ""
    tool = ""  # the command that builds the project, looked up on PATH

    def template_files(self) -> list[Path]:
        return []

    def render(self, board: Board, generated_dir: Path, project_dir: Path, input_bytes: int,
               library_name: str | None = None, energy_mode: bool = False) -> None:
        """`library_name`: the model library's (the build's name; default the model's); `energy_mode`: MLPerf
        Tiny's energy mode (m-timestamp-mode-energy, 9600 baud, timestamps as pulses on the board's pin)."""
        raise NotImplementedError

    def build_command(self, project_dir: Path, board: Board | None = None) -> list[str]:
        raise NotImplementedError

    def missing(self) -> str | None:
        """Why the project cannot be compiled on this computer (its tool is not on PATH), or None."""
        return None if shutil.which(self.tool) else f"{self.tool} is not on PATH"

    def half_made(self, project_dir: Path) -> Path | None:
        """The framework's build folder when a configure that did not finish left it (the next build would fail
        in it rather than configure again), else None. Only CMake-based frameworks configure."""
        return None


class CMakeFramework(Framework):
    """A framework whose build tool runs CMake with Ninja in project/build (idf.py, west): a configure that failed
    leaves build/ with CMakeCache.txt but no build.ninja (or neither), and every later build then fails with
    "ninja: error: loading 'build.ninja'" instead of configuring again."""

    def half_made(self, project_dir: Path) -> Path | None:
        build = project_dir / COMPILED
        if not build.is_dir() or not any(build.iterdir()):
            return None
        complete = (build / "CMakeCache.txt").is_file() and (build / "build.ninja").is_file()
        return None if complete else build


# MLPerf Tiny's energy mode: the DUT talks to the interface board at this rate (the reference firmware's).
ENERGY_MODE_BAUD = 9600


def pin_values(board: Board, energy_mode: bool, gpio: str) -> dict[str, str]:
    """Template values for the timestamp pin and the harness mode; energy mode needs the board's pin."""
    if energy_mode and not board.timestamp_gpio:
        raise PipelineError(f"board {board.name}: energy mode needs the timestamp pin: add [energy] timestamp_pin, "
                            "timestamp_gpio and source to the board file")
    return {"ENERGY_MODE": "1" if energy_mode else "0", "TIMESTAMP_GPIO": gpio,
            "TIMESTAMP_PIN": board.timestamp_pin or "none: the board file has no [energy] table",
            "TIMESTAMP_SOURCE": board.timestamp_source or "none"}


def _substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


class EspIdf(CMakeFramework):
    name = "esp-idf"
    tool = "idf.py"
    template = FIRMWARE_DIR / "esp-idf"

    def template_files(self) -> list[Path]:
        files = sorted(p for p in self.template.rglob("*") if p.is_file())
        return files + [FIRMWARE_DIR / f for f in COMMON_SOURCES] + list(library.TEMPLATE_FILES)

    def render(self, board: Board, generated_dir: Path, project_dir: Path, input_bytes: int,
               library_name: str | None = None, energy_mode: bool = False) -> None:
        if not board.target:
            raise PipelineError(f"board {board.name}: an esp-idf board needs a 'target' field (e.g. \"esp32\")")
        partitions = esp_partitions.layout(board)  # refuses a table ESP-IDF would reject, before writing
        values = {
            "BOARD": board.name,
            "PROJECT": f"mcu_deploy_{board.name}".replace("-", "_"),
            "TARGET": board.target,
            "CLOCK_MHZ": str(board.clock_mhz),
            "FLASH_CHIP_MB": str(board.flash_chip_mb),
            "CONSOLE_CONFIG": "\n".join(self.console_config(board, energy_mode)),
            "CONSOLE_COMPONENT": self.CONSOLE_COMPONENTS[board.console],
            "INPUT_BYTES": str(input_bytes),
            **pin_values(board, energy_mode, board.timestamp_gpio or "-1"),
        }
        if energy_mode and board.console != "uart":
            raise PipelineError(f"board {board.name}: MLPerf Tiny's energy mode runs the harness on a UART wired to the "
                                f"interface board; its console is {board.console} (use a board file with console = "
                                "\"uart\")")
        lib = render_library(board, generated_dir, project_dir / "main", name=library_name)
        values["LIBRARY_SOURCES"] = " ".join(lib.sources)
        for src in sorted(p for p in self.template.rglob("*") if p.is_file()):
            dst = project_dir / src.relative_to(self.template)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(_substitute(src.read_text(), values))
        (project_dir / "partitions.csv").write_text(esp_partitions.render_csv(partitions))
        for name in COMMON_SOURCES:
            shutil.copy2(FIRMWARE_DIR / name, project_dir / "main" / Path(name).name)

    # The ESP-IDF >= 5.3 driver component of each console (older versions have them all in `driver`).
    CONSOLE_COMPONENTS = {"uart": "esp_driver_uart", "usb-serial-jtag": "esp_driver_usb_serial_jtag"}

    @staticmethod
    def console_config(board: Board, energy_mode: bool = False) -> list[str]:
        """sdkconfig lines for the board's console. The baud rate is only visible to Kconfig (so only takes
        effect) with a custom UART console, which on UART0 keeps the default pins. Energy mode: 9600 baud."""
        if board.console == "usb-serial-jtag":
            return ["CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG=y"]
        return ["CONFIG_ESP_CONSOLE_UART_CUSTOM=y", "CONFIG_ESP_CONSOLE_UART_CUSTOM_NUM_0=y",
                f"CONFIG_ESP_CONSOLE_UART_BAUDRATE={ENERGY_MODE_BAUD if energy_mode else board.serial_baud}"]

    def build_command(self, project_dir: Path, board: Board | None = None) -> list[str]:
        return ["idf.py", "-C", str(project_dir), "build"]


class Zephyr(CMakeFramework):
    """A Zephyr application: the harness core on the console UART, TFLM from Zephyr's tflite-micro module."""

    name = "zephyr"
    tool = "west"
    template = FIRMWARE_DIR / "zephyr"
    KERNELS = {"cmsis-nn": "CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS=y",
               "reference": "# CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS is not set"}
    NO_DWT_CORES = ("cortex-m0", "cortex-m0plus")  # ARMv6-M has no DWT cycle counter

    @classmethod
    def clock(cls, board: Board) -> tuple[str, str]:
        """The compile definitions of the harness clock, and what they mean."""
        if board.qemu_machine:
            return "EE_CLOCK_DWT=0", "the kernel's cycle counter, which counts instructions under QEMU -icount"
        if board.core in cls.NO_DWT_CORES:
            return "EE_CLOCK_DWT=0", f"the kernel's cycle counter ({board.core} has no DWT)"
        return (f"EE_CLOCK_DWT=1 EE_CPU_MHZ={board.clock_mhz}",
                f"the core's DWT cycle counter at the CPU's {board.clock_mhz} MHz")

    def template_files(self) -> list[Path]:
        files = sorted(p for p in self.template.rglob("*") if p.is_file())
        return files + [FIRMWARE_DIR / f for f in COMMON_SOURCES] + list(library.TEMPLATE_FILES)

    def render(self, board: Board, generated_dir: Path, project_dir: Path, input_bytes: int,
               library_name: str | None = None, energy_mode: bool = False) -> None:
        if board.kernels not in self.KERNELS:
            raise PipelineError(f"board {board.name}: Zephyr's TFLM module has no {board.kernels} kernels "
                                f"(choose {' or '.join(self.KERNELS)})")
        values = {"BOARD": board.name, "ZEPHYR_BOARD": board.zephyr_board,
                  "PROJECT": f"mcu_deploy_{board.name}".replace("-", "_"), "INPUT_BYTES": str(input_bytes),
                  "KERNELS_CONFIG": self.KERNELS[board.kernels],
                  "PLATFORM": "qemu-icount" if board.qemu_machine else "device",
                  **pin_values(board, energy_mode, board.timestamp_gpio or ""),
                  "HAS_TIMESTAMP_PIN": "1" if board.timestamp_gpio else "0",
                  "TIMESTAMP_CONTROLLER": (board.timestamp_gpio or "").split(" ")[0]}
        values["CLOCK_DEFINES"], values["CLOCK_NOTE"] = self.clock(board)
        lib = render_library(board, generated_dir, project_dir / "src", name=library_name)
        values["LIBRARY_SOURCES"] = " ".join(f"src/{name}" for name in lib.sources)
        values["AUDIO_FRONTEND"] = self.microfrontend() if lib.settings["audio_frontend"] else ""
        for src in sorted(p for p in self.template.rglob("*") if p.is_file()):
            if src.name == "app.overlay" and not board.timestamp_gpio:
                continue  # no timestamp pin in the board file: no alias to define
            dst = project_dir / src.relative_to(self.template)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(_substitute(src.read_text(), values))
        for name in COMMON_SOURCES:
            shutil.copy2(FIRMWARE_DIR / name, project_dir / "src" / Path(name).name)

    @staticmethod
    def microfrontend() -> str:
        """CMake lines compiling TFLM's audio front end (the model library's audio entry) from Zephyr's tflite-micro
        module, which ships its sources (and kissfft in third_party_static/) but does not build them."""
        files = "\n".join(f"    ${{ZEPHYR_TFLITE_MICRO_MODULE_DIR}}/{library.MICROFRONTEND_DIR}/{n}"
                           for n in library.MICROFRONTEND_C + library.MICROFRONTEND_CC)
        return ("# The model takes audio: TFLM's microfrontend from Zephyr's tflite-micro module (shipped, not built "
                f"there).\ntarget_sources(app PRIVATE\n{files})\n"
                "target_include_directories(app PRIVATE ${ZEPHYR_TFLITE_MICRO_MODULE_DIR}/third_party_static/kissfft)\n")

    def build_command(self, project_dir: Path, board: Board | None = None) -> list[str]:
        return ["west", "build", "-b", board.zephyr_board if board else "BOARD", "-d", str(project_dir / "build"),
                str(project_dir)]

    def missing(self) -> str | None:
        if shutil.which("west") is None:
            return "west is not on PATH"
        if not os.environ.get("ZEPHYR_BASE"):
            return "ZEPHYR_BASE is not set (no Zephyr workspace)"
        return None


class Arduino(Framework):
    """An Arduino sketch folder: the harness core on Serial, TFLM from an Arduino Library Manager library."""

    name = "arduino"
    tool = "arduino-cli"
    template = FIRMWARE_DIR / "arduino"
    # The TFLM library the sketch uses (Arduino Library Manager name, the version the sketch was checked against,
    # its main header): TFLM of 2023 with CMSIS-NN kernels, for the mbed_nano, mbed_portenta, mbed_giga, mbed_nicla
    # and esp32 architectures.
    LIBRARY, LIBRARY_VERSION, LIBRARY_HEADER = "Chirale_TensorFLowLite", "2.0.0", "Chirale_TensorFlowLite.h"

    def template_files(self) -> list[Path]:
        files = sorted(p for p in self.template.rglob("*") if p.is_file())
        return files + [FIRMWARE_DIR / f for f in COMMON_SOURCES] + list(library.TEMPLATE_FILES)

    @staticmethod
    def sketch_name(name: str) -> str:
        """arduino-cli compiles .c and .cpp sketch files (not .cc): the C++ sources are renamed."""
        return name[:-3] + ".cpp" if name.endswith(".cc") else name

    def render(self, board: Board, generated_dir: Path, project_dir: Path, input_bytes: int,
               library_name: str | None = None, energy_mode: bool = False) -> None:
        values = {"BOARD": board.name, "FQBN": board.arduino_fqbn, "PLATFORM": board.arduino_platform,
                  "LIBRARY": self.LIBRARY, "LIBRARY_VERSION": self.LIBRARY_VERSION,
                  "LIBRARY_HEADER": self.LIBRARY_HEADER, "BAUD": str(board.serial_baud),
                  "CONSOLE_NOTE": ", ".join(board.usb_ids) or "USB CDC",
                  **pin_values(board, energy_mode, board.timestamp_gpio or ""),
                  "TIMESTAMP_DEFINE": (f"#define TIMESTAMP_PIN {board.timestamp_gpio}" if board.timestamp_gpio
                                       else "// no timestamp pin: the board file has no [energy] table")}
        # the sketch's main file must be named after its folder
        (project_dir / f"{project_dir.name.split('.')[0]}.ino").write_text(
            _substitute((self.template / "firmware.ino").read_text(), values))
        (project_dir / "sketch.yaml").write_text(_substitute((self.template / "sketch.yaml").read_text(), values))
        (project_dir / "ee_config.h").write_text(
            f"/* Rendered by mcu-deploy for {board.name}: the harness's input buffer holds exactly one model input. */\n"
            f"#define EE_MAX_DB_BYTES {input_bytes}u\n")
        for name in COMMON_SOURCES:
            shutil.copy2(FIRMWARE_DIR / name, project_dir / self.sketch_name(Path(name).name))
        render_library(board, generated_dir, project_dir, ".cpp", self.tflm_prelude(), library_name)

    @classmethod
    def tflm_prelude(cls) -> str:
        """The library's first include: the TFLM library's main header, by which arduino-cli finds the library."""
        return f"#include <{cls.LIBRARY_HEADER}>\n"

    def build_command(self, project_dir: Path, board: Board | None = None) -> list[str]:
        return ["arduino-cli", "compile", "--fqbn", board.arduino_fqbn if board else "FQBN", "--output-dir",
                str(project_dir / "build"), str(project_dir)]


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (EspIdf(), Zephyr(), Arduino())}

# Folders a framework's own build leaves in the project; kept across a re-render so rebuilds stay incremental.
KEEP_ON_RERENDER = ("build", "managed_components", "sdkconfig", "dependencies.lock")
COMPILED = "build"  # the framework's build output inside the project (idf.py, west build -d, arduino-cli --output-dir)


def model_hash_of(project_dir: Path) -> str | None:
    """The MODEL_HASH a rendered project was rendered with (its copy of model_settings.h), or None."""
    for header in sorted(Path(project_dir).rglob("*model_settings.h")):  # the model library's <name>_model_settings.h
        if {COMPILED, "managed_components"} & set(header.relative_to(project_dir).parts):
            continue
        match = re.search(r'#define MODEL_HASH "([0-9a-f]+)"', header.read_text(errors="replace"))
        if match:
            return match.group(1)
    return None


def framework_for(board: Board) -> Framework | None:
    return FRAMEWORKS.get(board.framework)


def render(board: Board, generated_dir: Path, project_dir: Path, input_bytes: int,
           library_name: str | None = None, energy_mode: bool = False) -> None:
    """Render into a temporary folder and swap it in, so a failed render leaves no half-written project.
    energy_mode: the harness serves MLPerf Tiny's energy mode (m-timestamp-mode-energy, 9600 baud, timestamps as
    pulses on the board's timestamp pin)."""
    framework = framework_for(board)
    tmp = project_dir.with_name(f"{project_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        framework.render(board, generated_dir, tmp, input_bytes, library_name, energy_mode)
    except PipelineError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if project_dir.exists():
        for name in KEEP_ON_RERENDER:
            if (project_dir / name).exists():
                (project_dir / name).rename(tmp / name)
        shutil.rmtree(project_dir)
    tmp.rename(project_dir)


SETUP_HINTS = {
    "esp-idf": "open an ESP-IDF shell (. $IDF_PATH/export.sh)",
    "zephyr": "in a Zephyr workspace with the tflite-micro module (west config manifest.project-filter -- "
              "+tflite-micro; west update), with ZEPHYR_BASE set",
    "arduino": f"install arduino-cli with the board's core and the TFLM library (arduino-cli core install, as the "
               f"sketch.yaml names it; arduino-cli lib install {Arduino.LIBRARY}@{Arduino.LIBRARY_VERSION}), then",
}


def compile_project(board: Board, project_dir: Path, log=print) -> FirmwareResult:
    framework = framework_for(board)
    command = framework.build_command(project_dir, board)
    printable = " ".join(command)
    missing = framework.missing()
    if missing:
        return FirmwareResult(framework.name, str(project_dir), False, printable,
                              f"{missing}: the project is ready; to compile it, {SETUP_HINTS[framework.name]}, "
                              f"run: {printable}")
    stale = framework.half_made(project_dir)
    if stale is not None:
        log(f"firmware: {stale} holds no complete configure (no build.ninja or CMakeCache.txt: an earlier "
            f"{framework.tool} configure failed); removing it so {framework.tool} configures afresh")
        shutil.rmtree(stale)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise PipelineError(f"firmware build failed ({printable} exited {completed.returncode}); see its output above")
    return FirmwareResult(framework.name, str(project_dir), True, printable, f"compiled with {printable}")
