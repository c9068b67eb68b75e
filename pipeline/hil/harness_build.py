"""Builds this project's benchmark harness for the host (POSIX, over a pseudo-terminal) and for QEMU's mps2 boards
(Cortex-M4F on mps2-an386; ARMv6-M Cortex-M0+ code on mps2-an385's Cortex-M3; Cortex-M7 on mps2-an500;
Cortex-M33 without DSP code on mps2-an505), with the deterministic TEST backend
or, linked with a TFLM library the user built (`--tflm=PATH`), the real model."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.firmware import library as model_library, projects

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


def build_host(out: Path, sanitize: bool = True, extensions: bool = True) -> Path:
    """The host port with the TEST backend; extensions=False answers only MLPerf Tiny's commands, as MLCommons'
    own device code does (no xinfo, xraw, xprofile, xdb, xbaud)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _compile(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *(SANITIZE if sanitize else []),
              *([] if extensions else ["-DEE_EXTENSIONS=0"]),
              f"-I{FIRMWARE / 'harness'}", *map(str, CORE_SOURCES), str(FIRMWARE / "ports" / "host" / "main.c"),
              "-o", str(out)], "host harness")
    return out


def build_fuzzer(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _compile(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *SANITIZE, f"-I{FIRMWARE / 'harness'}",
              *map(str, CORE_SOURCES), str(FIRMWARE / "harness" / "fuzz_core.c"), "-o", str(out)], "core fuzzer")
    return out


def build_qemu(out: Path, input_bytes: int, outputs: int, model: str, model_hash: str, work: int = 50,
               cpu: str = "cortex-m4+fp", switches: tuple[str, ...] = ()) -> Path:
    """The QEMU port with the deterministic TEST backend, for one of QEMU_CPUS (default the Cortex-M4F);
    `switches` adds -D switches (EE_CLOCK_CHECK=N: the port checks its clock N times at boot, for the tests)."""
    if cpu not in QEMU_CPUS:
        raise PipelineError(f"unknown QEMU cpu '{cpu}': choose one of {', '.join(QEMU_CPUS)}")
    arch, machine = QEMU_CPUS[cpu]
    defines, script = QEMU_MACHINES[machine]
    port = FIRMWARE / "ports" / "qemu-mps2-an386"
    out.parent.mkdir(parents=True, exist_ok=True)
    _compile(["arm-none-eabi-gcc", "-std=c99", *arch, *defines,
              "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
              f"-DEE_INPUT_BYTES={input_bytes}", f"-DEE_OUTPUTS={outputs}", f'-DEE_MODEL_NAME="{model}"',
              f'-DEE_MODEL_HASH="{model_hash}"', f"-DEE_WORK_ROUNDS={work}", *(f"-D{d}" for d in switches),
              f"-I{FIRMWARE / 'harness'}", *map(str, CORE_SOURCES), str(port / "startup.c"), str(port / "main.c"),
              f"-T{port / script}", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
              "-Wl,--gc-sections", "-o", str(out)], f"QEMU {machine} image")
    return out


# -- the real model: the ports linked with a TFLM library built from the user's TFLM tree --------------------------
# What each QEMU CPU compiles with (the same as TFLM's cortex_m_generic TARGET_ARCH), and the machine it runs on.
QEMU_CPUS = {
    "cortex-m4+fp": (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], "mps2-an386"),
    "cortex-m0plus": (["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"], "mps2-an385"),
    # TFLM's cortex-m7+fp: -mcpu=cortex-m7 -mfpu=auto (GCC: fpv5-d16, double precision) -mfloat-abi=hard. The
    # STM32F746's FPU is single precision only (fpv5-sp-d16); the int8 kernels barely touch it either way.
    "cortex-m7+fp": (["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"], "mps2-an500"),
    # TFLM's cortex-m33+nodsp: no DSP extension (CMSIS-NN falls back to its plain C loops), soft float ABI, as Zephyr
    # builds the RP2350's Cortex-M33. QEMU's AN505 Cortex-M33 has the DSP extension; the code simply never uses it.
    "cortex-m33+nodsp": (["-mcpu=cortex-m33+nodsp", "-mthumb", "-mfloat-abi=soft"], "mps2-an505"),
}
# Per machine: the port's defines (UART0 base, SysTick clock) and linker script. AN385, AN386 and AN500 share the
# MPS2 memory map (code in SSRAM1 at 0, data in SSRAM2/3 at 0x20000000, UART0 at 0x40004000, 25 MHz); the AN505's
# Cortex-M33 boots secure, so its image uses the secure aliases (code 0x10000000, data 0x38000000, UART0
# 0x50200000) and its 20 MHz system clock.
QEMU_MACHINES = {
    "mps2-an385": ([], "mps2_an386.ld"),
    "mps2-an386": ([], "mps2_an386.ld"),
    "mps2-an500": ([], "mps2_an386.ld"),
    "mps2-an505": (["-DUART0_BASE=0x50200000u", "-DGPIO0_BASE=0x50100000u", "-DCORE_CLOCK_HZ=20000000u"],
                   "mps2_an505.ld"),
}


def tflm_library(tflm: Path, target: str) -> Path:
    """The microlite library of a TFLM tree for a target ("cortex-m4+fp", "cortex-m0plus" or "host"): built by
    TFLM's own Makefile (gen/<target folder>/lib/libtensorflow-microlite.a); a release_with_logs build is preferred,
    then the newest."""
    pattern = "linux_x86_64_*" if target == "host" else f"cortex_m_generic_{target}_*"
    # Where several were built, a release_with_logs one first (it keeps TFLM's messages and per-op profiler).
    found = sorted(Path(tflm).glob(f"gen/{pattern}/lib/libtensorflow-microlite.a"),
                   key=lambda p: ("_release_with_logs" in p.parent.parent.name, p.stat().st_mtime))
    if not found:
        hint = "" if target == "host" else f" TARGET=cortex_m_generic TARGET_ARCH={target}"
        raise PipelineError(f"no TFLM library for {target} in {tflm}/gen: build it in the TFLM tree with "
                            f"`make -f tensorflow/lite/micro/tools/make/Makefile{hint} "
                            "BUILD_TYPE=release_with_logs microlite` (add OPTIMIZED_KERNEL_DIR=cmsis_nn for CMSIS-NN)")
    return found[-1]


def tflm_flags(tflm: Path, library: Path) -> list[str]:
    """Defines and include paths that must match how the library was built: TF_LITE_STATIC_MEMORY always (without
    it the port links, then fails on a wrong tensor layout), and the build type's NDEBUG / stripped error strings
    (a `release` build strips them, which also silences TFLM's per-operator profiler)."""
    build_type = library.parent.parent.name
    flags = ["-DTF_LITE_STATIC_MEMORY"]
    if "_release_with_logs" in build_type:
        flags.append("-DNDEBUG")
    elif "_release" in build_type:
        flags += ["-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS"]
    downloads = Path(tflm) / "tensorflow/lite/micro/tools/make/downloads"
    return flags + [f"-I{tflm}", f"-I{downloads / 'flatbuffers/include'}", f"-I{downloads / 'gemmlowp'}",
                    f"-I{downloads / 'ruy'}"]


def _build_tflm_port(cc: str, cxx: str, arch: list[str], port_sources: list[Path], link: list[str], generated: Path,
                     tflm: Path, library: Path, out: Path, what: str) -> Path:
    if not (generated / "model_data.cc").is_file():
        raise PipelineError(f"{generated} holds no generated model: run `invoke generate` first")
    if not (Path(tflm) / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise PipelineError(f"{tflm} is not a TFLM source tree (no tensorflow/lite/micro/micro_interpreter.h)")
    out.parent.mkdir(parents=True, exist_ok=True)
    objects = out.parent / (out.name + ".obj")
    shutil.rmtree(objects, ignore_errors=True)
    objects.mkdir()
    flags = tflm_flags(tflm, library)
    # the model library rendered from the generated files, as in every framework's project and `invoke export`
    lib_dir = objects / "library"
    lib = projects.render_harness_library(generated, lib_dir, what, "the TFLM library's")
    includes = [f"-I{FIRMWARE / 'harness'}", f"-I{FIRMWARE / 'common'}", f"-I{lib_dir}"]
    # db holds one model input, as in every framework's project (the reference firmware's 96x96x3 is the default)
    db_bytes = max(lib.settings["input_size"], 1)
    common = [*arch, "-O2", "-g", "-ffunction-sections", "-fdata-sections", f"-DEE_MAX_DB_BYTES={db_bytes}u"]
    for src in [FIRMWARE / "harness" / "ee_core.c", *port_sources]:
        _compile([cc, "-std=c99", *common, "-Wall", "-Wextra", "-Werror", "-DEE_BACKEND_TFLM", *flags, *includes,
                  "-c", str(src), "-o", str(objects / (src.name + ".o"))], what)
    fe_dirs = [f"-I{Path(tflm) / model_library.KISSFFT_DIR}"] if lib.settings["audio_frontend"] else []
    for src in [FIRMWARE / "common" / "model_runner.cc", FIRMWARE / "common" / "tflm_backend.cc",
                *(lib_dir / name for name in lib.sources)]:
        _compile([cxx, "-std=c++17", *common, "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
                  "-Wall", "-Wextra", "-Wno-unused-parameter", *flags, *fe_dirs, *includes, "-c", str(src),
                  "-o", str(objects / (src.name + ".o"))], what)
    if lib.settings["audio_frontend"]:  # TFLM's microfrontend from the same tree (third-party code: no -Werror)
        c_sources, cc_sources, fe_includes = model_library.microfrontend_sources(tflm)
        for src in c_sources:
            _compile([cc, "-std=c99", *common, *flags, *fe_includes, "-c", str(src),
                      "-o", str(objects / ("mf_" + src.name + ".o"))], what)
        for src in cc_sources:
            _compile([cxx, "-std=c++17", *common, "-fno-rtti", "-fno-exceptions", *flags, *fe_includes, "-c",
                      str(src), "-o", str(objects / ("mf_" + src.name + ".o"))], what)
    _compile([cxx, *arch, *sorted(map(str, objects.glob("*.o"))), str(library), *link, "-o", str(out)], what)
    shutil.rmtree(objects, ignore_errors=True)
    return out


def build_qemu_tflm(generated: Path, tflm: Path, out: Path, cpu: str = "cortex-m4+fp") -> Path:
    """The QEMU port with the real model: the generated files linked with the TFLM library for `cpu`."""
    if cpu not in QEMU_CPUS:
        raise PipelineError(f"unknown QEMU cpu '{cpu}': choose one of {', '.join(QEMU_CPUS)}")
    arch, machine = QEMU_CPUS[cpu]
    defines, script = QEMU_MACHINES[machine]
    port = FIRMWARE / "ports" / "qemu-mps2-an386"
    return _build_tflm_port("arm-none-eabi-gcc", "arm-none-eabi-g++", [*arch, *defines],
                            [port / "startup.c", port / "main.c"],
                            [f"-T{port / script}", "-nostartfiles", "--specs=nano.specs",
                             "--specs=nosys.specs", "-Wl,--gc-sections", "-lm"],
                            generated, tflm, tflm_library(tflm, cpu), out, f"QEMU {cpu} image with TFLM")


def build_host_tflm(generated: Path, tflm: Path, out: Path) -> Path:
    """The host (POSIX pty) port with the real model, linked with the TFLM host library."""
    import json

    report = generated.parent / "report.json"  # the build's host need: the 64-bit host's structs are larger
    host_bytes = json.loads(report.read_text()).get("arena_measured_bytes") if report.is_file() else None
    return _build_tflm_port("gcc", "g++", [f"-DEE_HOST_ARENA_BYTES={int(host_bytes or 0)}u"],
                            [FIRMWARE / "ports" / "host" / "main.c"], ["-lm"], generated, tflm,
                            tflm_library(tflm, "host"), out, "host harness with TFLM")


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


ICOUNT = "shift=0,align=off,sleep=off"


def free_tcp_port() -> int:
    """A loopback TCP port nobody listens on now, for a QemuDevice's UART."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuDevice:
    """The mps2-an386 image under qemu-system-arm, its UART on a loopback TCP port (pyserial socket://)."""

    def __init__(self, image: Path, tcp_port: int, icount: bool = True, machine: str = "mps2-an386",
                 log: Path | None = None):
        self.command = ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-kernel", str(image),
                        "-serial", f"tcp:127.0.0.1:{tcp_port},server=on,wait=off"]
        if log is not None:
            # QEMU maps the MPS2 GPIO blocks as unimplemented devices: -d unimp logs every write to them, so the
            # timestamp pin's levels can be read back from the log.
            self.command += ["-d", "unimp", "-D", str(log)]
        if icount:
            # One instruction per virtual ns: repeatable timings. align=off,sleep=off: QEMU does not hold the guest
            # back to real time, which makes the single-byte UART model take input ~2.8x faster (bench-serial);
            # the instruction counts are the same.
            self.command += ["-icount", ICOUNT]
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
