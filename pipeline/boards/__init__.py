"""Board definitions: one TOML file per board in boards/, data only.

A board says what it has (core, clock, flash and RAM budgets), what the firmware besides the model is
estimated to cost, which firmware framework renders its project, which flashers can program it and how its
serial port is set up. A user's own board file is loaded the same way, from a path.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    clock_mhz: int
    framework: str
    # Budgets the model and runtime must fit in: flash is what the application image may occupy, RAM what
    # the application may allocate (both after what the SDK itself reserves).
    flash_bytes: int
    ram_bytes: int
    # Estimates of what the firmware besides the model costs: SDK, TFLM runtime and kernels, the harness.
    runtime_flash_bytes: int
    runtime_ram_bytes: int
    runtime_source: str  # where the runtime figures came from: a build of this firmware measured with a named framework version, or "estimate: ..."
    flashers: tuple[str, ...]
    serial_baud: int
    usb_ids: tuple[str, ...] = ()
    target: str | None = None  # the framework's own name for the chip, e.g. ESP-IDF's "esp32s3"
    active_power_mw: float | None = None
    # Power while the firmware waits between inferences (the lightest sleep that keeps RAM and wakes on a timer),
    # with where the figure came from; None where unknown (battery life then cannot be estimated).
    sleep_power_mw: float | None = None
    sleep_power_source: str | None = None
    pyocd_target: str | None = None  # pyocd's name for the chip, where pyocd flashes the board
    # Which port the firmware serves the benchmark protocol on: "uart" (a USB-UART bridge or a probe's virtual
    # COM port) or "usb-serial-jtag" (the chip's own USB, e.g. the ESP32-S3's, VID:PID 303a:1001).
    console: str = "uart"
    flash_chip_mb: int | None = None  # the flash chip's size, where the firmware's partition table depends on it
    # The optimized int8 kernels the firmware links: "reference", "cmsis-nn" or "esp-nn". They decide the scratch
    # buffers the arena must hold and the latency estimate.
    kernels: str = "reference"
    zephyr_board: str | None = None  # Zephyr's name for the board (`west build -b`), for framework "zephyr"
    # Arduino's name for the board (`arduino-cli compile --fqbn`) and its core with the version the sketch was
    # checked against ("arduino:mbed_nano (4.6.0)"), for framework "arduino"
    arduino_fqbn: str | None = None
    arduino_platform: str | None = None
    # A board that runs under qemu-system-arm: its machine (its clock counts instructions).
    qemu_machine: str | None = None
    west_runner: str | None = None  # Zephyr's runner for `west flash` (pyocd, openocd, jlink, bossac ...)
    # The rate the reader switches the console to for uploads (xbaud, extension v3), where the board's USB-UART
    # bridge or probe carries it; None: stay at serial_baud.
    fast_baud: int | None = None
    # What the one CPI rule (pipeline.target.costmodel.cpi_rule) needs from the board, [estimate] in its file: the
    # cycles a flash read waits at this clock (a range where not verified) and the path code and weights take from
    # flash (FLASH_PATHS: an accelerator, caches or none), with the datasheet they came from. A board whose clock
    # counts instructions (QEMU -icount) gives cycles_per_instruction instead: a definition, not an estimate.
    flash_wait_cycles: tuple[float, float] | None = None
    flash_path: str | None = None
    estimate_source: str | None = None
    cycles_per_instruction: float | None = None
    cycles_per_instruction_source: str | None = None
    # Where the budgets come from: the framework's linker facts (the Zephyr board's chosen zephyr,sram and code
    # partition, the Arduino core's linker script, ESP-IDF's partition table and heap), file and version named.
    flash_source: str | None = None
    ram_source: str | None = None
    # The largest single block the firmware can allocate the arena in, where that is less than the RAM budget (the
    # ESP-IDF port allocates it from a heap split into regions); None: the arena is a static array in RAM.
    arena_block_bytes: int | None = None
    # The ops the measured runtime figure registered, and the allowance for other models' kernels it includes: with
    # a kernel size table for the board's core and kernels (boards/facts/kernel_flash/), the fit replaces the
    # allowance by the kernels of the ops the model really registers (pipeline.target.fit.runtime_flash).
    runtime_ops: tuple[str, ...] | None = None
    runtime_other_ops_bytes: int = 0
    # The timestamp pin ([energy]): the header pin a user wires (timestamp_pin, e.g. "D7"), what the firmware drives
    # (timestamp_gpio: an ESP-IDF GPIO number, a Zephyr devicetree GPIO "&gpiof 13", an Arduino pin name "D2"), and
    # where the mapping comes from.
    timestamp_pin: str | None = None
    timestamp_gpio: str | None = None
    timestamp_source: str | None = None
    source: Path | None = field(default=None, compare=False)


def _require(table: dict, key: str, kind: type, where: str):
    if key not in table:
        raise PipelineError(f"{where}: missing field '{key}'")
    value = table[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise PipelineError(f"{where}: field '{key}' must be a positive integer (got {value!r})")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise PipelineError(f"{where}: field '{key}' must be a positive number (got {value!r})")
    if kind is str and (not isinstance(value, str) or not value.strip()):
        raise PipelineError(f"{where}: field '{key}' must be a non-empty string (got {value!r})")
    if kind is list and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise PipelineError(f"{where}: field '{key}' must be a list of strings (got {value!r})")
    return value


CONSOLES = ("uart", "usb-serial-jtag")
KERNELS = ("reference", "cmsis-nn", "esp-nn")
# How code and the model's weights reach the core from flash (the CPI rule's exposure table is keyed by these):
# zero-wait RAM, an STM32 ART accelerator, the Cortex-M7's L1 caches, an instruction cache only, or an XIP cache
# in front of external QSPI flash.
FLASH_PATHS = ("sram", "art", "l1-cache", "icache", "xip-cache")
USB_SERIAL_JTAG_ID = "303a:1001"  # Espressif's USB Serial/JTAG controller, the same on every chip that has one
# ESP-IDF targets with a USB Serial/JTAG controller (the ESP32 and ESP32-S2 have none).
USB_SERIAL_JTAG_TARGETS = ("esp32s3", "esp32c3", "esp32c5", "esp32c6", "esp32c61", "esp32h2", "esp32p4")
ESP_FLASH_CHIP_MB = (1, 2, 4, 8, 16, 32, 64, 128)  # the sizes ESP-IDF's CONFIG_ESPTOOLPY_FLASHSIZE offers


def _choice(table: dict, key: str, choices: tuple, default: str, where: str) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise PipelineError(f"{where}: field '{key}' must be one of {', '.join(choices)} (got {value!r})")
    return value


def _check_esp_idf(board: Board, where: str) -> None:
    """What an ESP-IDF project needs from its board file, checked before anything is rendered."""
    if board.flash_chip_mb is None:
        raise PipelineError(f"{where} [memory]: an esp-idf board needs 'flash_chip_mb' (the flash chip's size: "
                            f"{', '.join(map(str, ESP_FLASH_CHIP_MB))})")
    if board.flash_chip_mb not in ESP_FLASH_CHIP_MB:
        raise PipelineError(f"{where} [memory]: field 'flash_chip_mb' must be one of "
                            f"{', '.join(map(str, ESP_FLASH_CHIP_MB))} (got {board.flash_chip_mb})")
    from pipeline.boards import esp_partitions

    esp_partitions.layout(board)  # the partition table it will render: refused now, before any training
    if board.console == "usb-serial-jtag" and board.target not in USB_SERIAL_JTAG_TARGETS:
        raise PipelineError(f"{where} [serial]: console 'usb-serial-jtag' needs a chip that has one "
                            f"({', '.join(USB_SERIAL_JTAG_TARGETS)}), not {board.target}")
    # The port auto-detection must find the port the firmware really answers on.
    if board.console == "uart" and USB_SERIAL_JTAG_ID in board.usb_ids:
        raise PipelineError(f"{where} [serial]: usb lists {USB_SERIAL_JTAG_ID} (the chip's USB Serial/JTAG), but the "
                            "firmware serves the protocol on the UART: remove it, or set console = \"usb-serial-jtag\"")
    if board.console == "usb-serial-jtag" and board.usb_ids != (USB_SERIAL_JTAG_ID,):
        raise PipelineError(f"{where} [serial]: with console = \"usb-serial-jtag\" the port is the chip's own USB: "
                            f"usb must be [\"{USB_SERIAL_JTAG_ID}\"] (got {list(board.usb_ids)})")


def _wait_cycles(estimate: dict, where: str) -> tuple[float, float] | None:
    """[estimate] flash_wait_cycles: one number (a datasheet's wait states at the board's clock) or [low, high]."""
    if "flash_wait_cycles" not in estimate:
        return None
    value = estimate["flash_wait_cycles"]
    pair = value if isinstance(value, list) else [value, value]
    if (len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in pair)
            or pair[0] > pair[1]):
        raise PipelineError(f"{where}: field 'flash_wait_cycles' must be a number >= 0 or [low, high] "
                            f"(got {value!r})")
    return float(pair[0]), float(pair[1])


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: missing table [{key}]")
    return value


def parse_board(data: dict, where: str, source: Path | None = None) -> Board:
    memory = _table(data, "memory", where)
    runtime = _table(data, "runtime", where)
    flash = _table(data, "flash", where)
    serial = _table(data, "serial", where)
    power = data.get("power", {})
    estimate = data.get("estimate", {})
    energy = data.get("energy", {})
    if not isinstance(energy, dict):
        raise PipelineError(f"{where}: [energy] must be a table")
    usb = serial.get("usb", [])
    if not isinstance(usb, list) or not all(isinstance(u, str) and len(u.split(":")) == 2 for u in usb):
        raise PipelineError(f"{where}: field 'serial.usb' must be a list of \"VID:PID\" strings (got {usb!r})")
    target = data.get("target")
    if target is not None and not isinstance(target, str):
        raise PipelineError(f"{where}: field 'target' must be a string (got {target!r})")
    board = Board(
        name=_require(data, "name", str, where),
        description=_require(data, "description", str, where),
        core=_require(data, "core", str, where),
        clock_mhz=_require(data, "clock_mhz", int, where),
        framework=_require(data, "framework", str, where),
        flash_bytes=_require(memory, "flash_bytes", int, where + " [memory]"),
        ram_bytes=_require(memory, "ram_bytes", int, where + " [memory]"),
        runtime_flash_bytes=_require(runtime, "flash_bytes", int, where + " [runtime]"),
        runtime_ram_bytes=_require(runtime, "ram_bytes", int, where + " [runtime]"),
        runtime_source=(_require(runtime, "source", str, where + " [runtime]") if "source" in runtime
                        else "estimate"),
        runtime_ops=tuple(_require(runtime, "ops", list, where + " [runtime]")) if "ops" in runtime else None,
        runtime_other_ops_bytes=(_require(runtime, "other_ops_bytes", int, where + " [runtime]")
                                 if "other_ops_bytes" in runtime else 0),
        flashers=tuple(_require(flash, "runners", list, where + " [flash]")),
        serial_baud=_require(serial, "baud", int, where + " [serial]"),
        usb_ids=tuple(usb),
        target=target,
        active_power_mw=_require(power, "active_mw", float, where + " [power]") if "active_mw" in power else None,
        sleep_power_mw=_require(power, "sleep_mw", float, where + " [power]") if "sleep_mw" in power else None,
        sleep_power_source=(_require(power, "sleep_source", str, where + " [power]") if "sleep_mw" in power
                            else None),
        pyocd_target=_require(flash, "pyocd_target", str, where + " [flash]") if "pyocd_target" in flash else None,
        console=_choice(serial, "console", CONSOLES, "uart", where + " [serial]"),
        flash_chip_mb=(_require(memory, "flash_chip_mb", int, where + " [memory]")
                       if "flash_chip_mb" in memory else None),
        kernels=_choice(data, "kernels", KERNELS, "reference", where),
        zephyr_board=_require(data, "zephyr_board", str, where) if "zephyr_board" in data else None,
        qemu_machine=_require(data, "qemu_machine", str, where) if "qemu_machine" in data else None,
        west_runner=_require(flash, "west_runner", str, where + " [flash]") if "west_runner" in flash else None,
        fast_baud=_require(serial, "fast_baud", int, where + " [serial]") if "fast_baud" in serial else None,
        arduino_fqbn=_require(data, "arduino_fqbn", str, where) if "arduino_fqbn" in data else None,
        arduino_platform=_require(data, "arduino_platform", str, where) if "arduino_platform" in data else None,
        flash_wait_cycles=_wait_cycles(estimate, where + " [estimate]"),
        flash_path=(_choice(estimate, "flash_path", FLASH_PATHS, "none", where + " [estimate]")
                    if "flash_path" in estimate else None),
        estimate_source=_require(estimate, "source", str, where + " [estimate]") if estimate else None,
        cycles_per_instruction=(_require(estimate, "cycles_per_instruction", float, where + " [estimate]")
                                if "cycles_per_instruction" in estimate else None),
        cycles_per_instruction_source=(_require(estimate, "source", str, where + " [estimate]")
                                       if "cycles_per_instruction" in estimate else None),
        flash_source=_require(memory, "flash_source", str, where + " [memory]") if "flash_source" in memory else None,
        ram_source=_require(memory, "ram_source", str, where + " [memory]") if "ram_source" in memory else None,
        arena_block_bytes=(_require(memory, "arena_block_bytes", int, where + " [memory]")
                           if "arena_block_bytes" in memory else None),
        timestamp_pin=_require(energy, "timestamp_pin", str, where + " [energy]") if energy else None,
        timestamp_gpio=_require(energy, "timestamp_gpio", str, where + " [energy]") if energy else None,
        timestamp_source=_require(energy, "source", str, where + " [energy]") if energy else None,
        source=source,
    )
    if board.framework == "esp-idf" and board.timestamp_gpio is not None and not board.timestamp_gpio.isdigit():
        raise PipelineError(f"{where} [energy]: an esp-idf board's timestamp_gpio is the chip's GPIO number, e.g. \"4\" "
                            f"(got {board.timestamp_gpio!r})")
    if board.framework == "zephyr" and board.timestamp_gpio is not None and not re.fullmatch(
            r"&\w+ \d+", board.timestamp_gpio):
        raise PipelineError(f"{where} [energy]: a zephyr board's timestamp_gpio is a devicetree GPIO controller and pin, "
                            f"e.g. \"&gpiof 13\" (got {board.timestamp_gpio!r})")
    if board.framework == "esp-idf":
        _check_esp_idf(board, where)
    if board.framework == "arduino" and not (board.arduino_fqbn and board.arduino_platform):
        raise PipelineError(f"{where}: an arduino board needs 'arduino_fqbn' (e.g. \"arduino:mbed_nano:nano33ble\") "
                            "and 'arduino_platform' (the core and its version, e.g. \"arduino:mbed_nano (4.2.4)\")")
    if board.framework == "zephyr" and not board.zephyr_board:
        raise PipelineError(f"{where}: a zephyr board needs 'zephyr_board' (Zephyr's board name, e.g. \"nucleo_l4r5zi\")")
    return board


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def load_board(name_or_path: str) -> Board:
    """A board by name (a file in boards/) or by the path of a user's own board file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        path = candidate
        if not path.is_file():
            raise PipelineError(f"board file {path} does not exist")
    else:
        path = BOARDS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise PipelineError(
                f"unknown board '{name_or_path}': choose one of {', '.join(board_names())} "
                "or pass the path of your own board file (--board=path/to/board.toml)"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"board file {path} is not valid TOML: {exc}") from None
    return parse_board(data, f"board file {path}", source=path)


def all_boards() -> list[Board]:
    return [load_board(name) for name in board_names()]
