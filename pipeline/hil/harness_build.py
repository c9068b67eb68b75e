"""Builds this project's benchmark harness for the places TFLM cannot be compiled here: the host (POSIX, over a
pseudo-terminal) and the Cortex-M4 of QEMU's mps2-an386. Both use the deterministic TEST backend."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from pipeline.errors import PipelineError

FIRMWARE = Path(__file__).resolve().parent.parent.parent / "firmware"
CORE_SOURCES = [FIRMWARE / "harness" / "ee_core.c", FIRMWARE / "harness" / "test_backend.c"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]


def _compile(command: list[str], what: str) -> None:
    if shutil.which(command[0]) is None:
        raise PipelineError(f"{command[0]} is not installed: it builds the {what} (Debian: apt-get install "
                            f"{'gcc-arm-none-eabi' if 'arm' in command[0] else 'gcc'})")
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PipelineError(f"building the {what} failed: {proc.stderr.strip().splitlines()[0] if proc.stderr else proc.returncode}")


def build_host(out: Path, sanitize: bool = True) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _compile(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *(SANITIZE if sanitize else []),
              f"-I{FIRMWARE / 'harness'}", *map(str, CORE_SOURCES), str(FIRMWARE / "ports" / "host" / "main.c"),
              "-o", str(out)], "host harness")
    return out


def build_fuzzer(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _compile(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *SANITIZE, f"-I{FIRMWARE / 'harness'}",
              *map(str, CORE_SOURCES), str(FIRMWARE / "harness" / "fuzz_core.c"), "-o", str(out)], "core fuzzer")
    return out


def build_qemu(out: Path, input_bytes: int, outputs: int, model: str, model_hash: str, work: int = 50) -> Path:
    port = FIRMWARE / "ports" / "qemu-mps2-an386"
    out.parent.mkdir(parents=True, exist_ok=True)
    _compile(["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
              "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
              f"-DEE_INPUT_BYTES={input_bytes}", f"-DEE_OUTPUTS={outputs}", f'-DEE_MODEL_NAME="{model}"',
              f'-DEE_MODEL_HASH="{model_hash}"', f"-DEE_WORK_ROUNDS={work}", f"-I{FIRMWARE / 'harness'}",
              *map(str, CORE_SOURCES), str(port / "startup.c"), str(port / "main.c"),
              f"-T{port / 'mps2_an386.ld'}", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
              "-Wl,--gc-sections", "-o", str(out)], "QEMU mps2-an386 image")
    return out


class HostDevice:
    """The host harness running on a pseudo-terminal: `with HostDevice(binary, ...) as dev: dev.port`."""

    def __init__(self, binary: Path, *args: str):
        self.command = [str(binary), *args]
        self.process = None
        self.port = None

    def __enter__(self):
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("pty: "):
            self.process.kill()
            raise PipelineError(f"the host harness did not start: {line or self.process.stderr.read()}")
        self.port = line[len("pty: "):]
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.stderr = err


class QemuDevice:
    """The mps2-an386 image under qemu-system-arm, its UART on a loopback TCP port (pyserial socket://)."""

    def __init__(self, image: Path, tcp_port: int, icount: bool = True):
        self.command = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-kernel", str(image),
                        "-serial", f"tcp:127.0.0.1:{tcp_port},server=on,wait=off"]
        if icount:
            self.command += ["-icount", "shift=0"]  # one instruction per virtual ns: repeatable timings
        self.url = f"socket://127.0.0.1:{tcp_port}"
        self.process = None

    def __enter__(self):
        if shutil.which("qemu-system-arm") is None:
            raise PipelineError("qemu-system-arm is not installed (Debian: apt-get install qemu-system-arm)")
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        if self.process.poll() is not None:
            raise PipelineError(f"qemu-system-arm exited: {self.process.stderr.read().strip()}")
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
