"""`invoke flash`: one small class per flashing tool behind one interface; the board file lists which it
supports ([flash] runners), in order of preference, as Zephyr's west runners do."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.boards import Board
from pipeline.errors import PipelineError


class Flasher:
    name = ""

    def available(self) -> bool:
        raise NotImplementedError

    def install_hint(self) -> str:
        raise NotImplementedError

    def command(self, board: Board, project: Path, port: str, image: Path | None) -> list[str]:
        raise NotImplementedError

    def failure_hint(self, board: Board, port: str) -> str:
        return "check the cable and the port"


class Esptool(Flasher):
    """Flashes what an ESP-IDF build produced, from its build/flasher_args.json (offsets and files)."""

    name = "esptool"
    baud = 460800

    def __init__(self, connect_attempts: int = 7):
        self.connect_attempts = connect_attempts

    def available(self) -> bool:
        return importlib.util.find_spec("esptool") is not None

    def install_hint(self) -> str:
        return "pip install esptool"

    def command(self, board, project, port, image=None):
        args_file = (image or project / "build" / "flasher_args.json")
        if not args_file.is_file():
            raise PipelineError(f"no {args_file}: compile the firmware first (from an ESP-IDF shell: "
                                f"idf.py -C {project} build, or invoke build --board={board.name})")
        try:
            args = json.loads(args_file.read_text())
            extra = args.get("extra_esptool_args", {})
            files = args["flash_files"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise PipelineError(f"{args_file} is not an ESP-IDF flasher_args.json: {exc}") from None
        build = args_file.parent
        missing = [f for f in files.values() if not (build / f).is_file()]
        if missing:
            raise PipelineError(f"{build / missing[0]} is missing: rebuild the firmware (idf.py -C {project} build)")
        # ESP-IDF writes esptool's older underscore spellings; esptool 5 takes the dashed ones.
        dashed = [a.replace("_", "-") if a.startswith("--") else a for a in args.get("write_flash_args", [])]
        chip = extra.get("chip", board.target)
        return [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(self.baud),
                "--connect-attempts", str(self.connect_attempts),
                "--before", extra.get("before", "default_reset").replace("_", "-"),
                "--after", extra.get("after", "hard_reset").replace("_", "-"),
                "write-flash", *dashed,
                *[x for offset, f in sorted(files.items(), key=lambda kv: int(kv[0], 16)) for x in (offset, str(build / f))]]

    def failure_hint(self, board, port):
        return (f"esptool could not program the {board.target} on {port}: hold BOOT while pressing RESET to enter "
                "the bootloader, close any serial monitor on the port, then retry")


class Pyocd(Flasher):
    """Flashes an ELF or HEX image through a CMSIS-DAP / ST-LINK probe."""

    name = "pyocd"

    def available(self) -> bool:
        return shutil.which("pyocd") is not None

    def install_hint(self) -> str:
        return "pip install pyocd"

    def command(self, board, project, port, image=None):
        if image is None:
            raise PipelineError(f"pyocd needs the firmware image for {board.name}: pass --image=path/to/firmware.elf")
        if not image.is_file():
            raise PipelineError(f"firmware image {image} does not exist")
        target = board.pyocd_target or board.name
        command = ["pyocd", "flash", "--target", target]
        if port:
            command += ["--uid", port]  # pyocd picks the probe by its unique id, not a serial port
        return command + [str(image)]

    def failure_hint(self, board, port):
        return f"pyocd could not program {board.name}: check the probe's USB cable and `pyocd list`"


class West(Flasher):
    """`west flash` on a Zephyr build: Zephyr's own runner for the board (pyocd, openocd, jlink, bossac ...),
    chosen by the board file's `[flash] west_runner` or Zephyr's default for the board."""

    name = "west"

    def available(self) -> bool:
        return shutil.which("west") is not None

    def install_hint(self) -> str:
        return "pip install west, in a Zephyr workspace (ZEPHYR_BASE set)"

    def command(self, board, project, port, image=None):
        build = project / "build"
        if not (build / "zephyr" / "zephyr.elf").is_file():
            raise PipelineError(f"no Zephyr build in {build}: run `invoke build --board={board.name}` in a Zephyr "
                                "workspace first")
        command = ["west", "flash", "-d", str(build)]
        if board.west_runner:
            command += ["--runner", board.west_runner]
        if port and board.west_runner == "bossac":
            command += ["--bossac-port", port]  # the Nano 33 BLE's bootloader port
        return command

    def failure_hint(self, board, port):
        return f"west flash could not program {board.name}: check the probe or bootloader and `west flash --help`"


class ArduinoCli(Flasher):
    """`arduino-cli upload` of a compiled sketch: the core's own uploader (bossac for the Nano 33 BLE, which the
    core resets into its bootloader with a 1200-baud touch of the port)."""

    name = "arduino-cli"

    def available(self) -> bool:
        return shutil.which("arduino-cli") is not None

    def install_hint(self) -> str:
        return "install arduino-cli (arduino.github.io/arduino-cli) with the board's core"

    def command(self, board, project, port, image=None):
        build = image or project / "build"
        if not any(Path(build).glob("*.bin")) and not any(Path(build).glob("*.hex")):
            raise PipelineError(f"no compiled sketch in {build}: run `invoke build --board={board.name}` with "
                                "arduino-cli on PATH first")
        return ["arduino-cli", "upload", "-p", port, "--fqbn", board.arduino_fqbn, "--input-dir", str(build),
                str(project)]

    def failure_hint(self, board, port):
        return (f"arduino-cli could not upload to the {board.name} on {port}: double-tap its reset button to enter "
                "the bootloader and try again")


FLASHERS: dict[str, Flasher] = {f.name: f for f in (Esptool(), Pyocd(), West(), ArduinoCli())}


def choose(board: Board, runner: str | None) -> Flasher:
    names = [runner] if runner else list(board.flashers)
    for name in names:
        if name not in board.flashers:
            raise PipelineError(f"board {board.name} is not flashed with '{name}' (its runners: {', '.join(board.flashers)})")
        if name in FLASHERS:
            return FLASHERS[name]
    raise PipelineError(f"no flasher class for {board.name}'s runners ({', '.join(board.flashers)}) yet: flash it "
                        "with your usual tool")


def flash(board: Board, project: Path, port: str, runner: str | None = None, image: Path | None = None,
          flasher: Flasher | None = None) -> list[str]:
    flasher = flasher or choose(board, runner)
    if not flasher.available():
        raise PipelineError(f"{flasher.name} is not installed: {flasher.install_hint()}")
    if flasher.name == "esptool" and not Path(port).exists() and "://" not in port:
        raise PipelineError(f"serial port {port} does not exist: check the cable and --port")
    command = flasher.command(board, project, port, image)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise PipelineError(f"{flasher.failure_hint(board, port)} ({flasher.name} exited {completed.returncode})")
    return command
